"""One ``eval compare`` run as a function of already-loaded models: what the CLI does after loading, and what
the desktop's engine worker runs for the Compare page (progress callback, cancel event; a cancelled run
returns the table of the answers that finished)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from engine.agent import Cancelled


def _reseed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def compare_job(builder, *, data: str, systems: list[str], format: str = "auto", limit: int | None = None,
                samples: int = 5, budget_s: float | None = None, out: str | Path, seed: int = 0,
                classifier: str | None = None, device: str | None = None, title: str = "",
                progress=None, cancel: threading.Event | None = None, score_only: bool = False) -> dict:
    """Run and score; writes ``records.jsonl``, ``report.json``, ``table.md``, ``compare.png`` into ``out``.
    Returns ``{"report", "table", "png", "out", "seconds", "cancelled", "notes"}``. Bad data raises
    :class:`engine.data.DataFormatError` (file, record, field) before any model runs. ``score_only``: score the
    answers ``out/records.jsonl`` already holds, answering nothing (``builder`` may be None)."""
    from engine.data.readers import read_any
    from engine.evaluation.compare import run_compare, score
    from engine.evaluation.compare_report import chart, markdown_table
    from engine.evaluation.heldout import heldout_queries
    from engine.evaluation.responses_cli import load_classifier

    episodes = read_any(data, format)
    queries, notes = heldout_queries(episodes, limit)
    if not queries:
        raise ValueError(f"{data}: no held-out turn found (each episode's last session needs a main-speaker turn "
                         "after a partner turn)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cancelled = False
    try:
        if score_only:
            raise Cancelled("score only")
        gen = getattr(getattr(builder, "models", None), "generator", None)
        backend = getattr(gen, "backend", None)
        workers = backend.max_in_flight if backend is not None else 1  # a generator server batches requests
        if workers > 1:
            notes.append(f"queries answered {workers} at a time on {backend.where}")
        results = run_compare(queries, systems, builder, samples=samples, budget_s=budget_s,
                              records_path=out / "records.jsonl", reseed=lambda i: _reseed(seed + i),
                              progress=progress, cancel=cancel, workers=workers)
    except Cancelled:
        cancelled = not score_only
        results = run_compare(queries, systems, _never_built, samples=samples, records_path=out / "records.jsonl",
                              only_recorded=True)
    elapsed = time.perf_counter() - t0
    clf, why = load_classifier(classifier, device)
    report = score(results, classifier=clf, classifier_error=why, seed=seed)
    report["meta"] = {"systems": report.get("meta", {}), "data": str(data), "format": format, "limit": limit,
                      "queries": len(queries), "samples": samples, "budget_s": budget_s, "seed": seed,
                      "seconds": round(elapsed, 1), "cancelled": cancelled,
                      "models": builder.describe() if builder is not None else "(scored from records.jsonl)"}
    title = title or Path(data).name
    table = markdown_table({**report, "meta": report["meta"]["systems"]}, title)
    (out / "table.md").write_text(table, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False, default=str), encoding="utf-8")
    png = str(chart(report, out / "compare.png", title)) if report["systems"] else None
    return {"report": report, "table": table, "png": png, "out": str(out), "seconds": elapsed,
            "cancelled": cancelled, "notes": notes}


def _never_built(name):  # pragma: no cover - only_recorded never builds
    raise AssertionError("only_recorded runs build no agent")
