"""``memlab eval compare``: the same held-out turns answered by several systems, one table.

    memlab eval compare --systems emma,summary,rag,no-memory,full-history --data valid.json --limit 100
    memlab eval compare --systems milp,no-memory --data malp.json --format malp --budget-s 60 --json

Prints a Markdown table (values ×100 with 95% bootstrap intervals) and writes it with a PNG chart, the
per-answer records (JSON Lines; a re-run with the same --out continues after them) and the JSON report
into --out. With --json, stdout is one object {"n": N, "systems": {name: {metric: value,
"<metric>_ci": [lo, hi]}}, "meta": {...}}. With --study the report is also stored in that study database.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

FORMATS = ("auto", "memlab", "convai2", "locomo", "malp")
DEFAULT_SYSTEMS = "emma,summary,rag,no-memory,full-history"


def register(esub) -> None:
    p = esub.add_parser("compare", help="every system answers the same held-out turns; one table with 95% CIs",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma-separated registry names (default {DEFAULT_SYSTEMS})")
    p.add_argument("--data", required=True, help="episodes: memlab-episode/1, ConvAI2, LoCoMo or MaLP")
    p.add_argument("--format", default="auto", choices=FORMATS, help="data format (default: detected)")
    p.add_argument("--limit", type=int, help="first N held-out turns (one per episode)")
    p.add_argument("--budget-s", type=float, help="seconds a per-user-training system may train per user")
    p.add_argument("--samples", type=int, default=5, help="sampled responses per query for S-Dist (default 5; 0: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", help="folder for table.md, compare.png, report.json, records.jsonl "
                                 "(default compare-<data name>)")
    p.add_argument("--title", help="table/chart title (default: the data file name)")
    p.add_argument("--set", action="append", default=[], metavar="SYSTEM.NAME=VALUE",
                   help="a system option, e.g. --set rag.k=5 (repeatable)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="reply length limit (default 40)")
    p.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed (default 0)")
    p.add_argument("--lm", help="generator: HF id or directory (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--encoder", help="sentence encoder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--adapter", default="auto", help="generator adapter: auto (default), none, or a directory")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--classifier", help="consistency classifier directory; 'none' skips Con.S (default: shipped)")
    p.add_argument("--study", help="also store the report in this study database")
    p.add_argument("--campaign", help="with --study: the campaign the report belongs to")
    p.set_defaults(func=run)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_system_options(pairs: list[str], systems: list[str]) -> dict[str, dict]:
    out = {s: {} for s in systems}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        system, dot, name = key.partition(".")
        if not eq or not dot or not name.strip():
            raise ValueError(f"--set {pair!r}: expected SYSTEM.NAME=VALUE, e.g. rag.k=5")
        if system not in out:
            raise ValueError(f"--set {pair!r}: {system!r} is not one of --systems ({', '.join(systems)})")
        out[system][name.strip()] = value.strip()
    return out


def _reseed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def run(args) -> int:
    from engine.backbones.types import ModelNotFoundError
    from engine.data.errors import DataFormatError
    from engine.data.readers import read_any
    from engine.evaluation.compare import run_compare, score
    from engine.evaluation.compare_report import chart, markdown_table
    from engine.evaluation.heldout import heldout_queries
    from engine.evaluation.loading import SystemBuilder
    from engine.systems.registry import RegistryError

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems:
        _err("error: --systems is empty")
        return 2
    if args.limit is not None and args.limit < 1:
        _err("error: --limit must be at least 1")
        return 2
    try:
        options = parse_system_options(args.set, systems)
        episodes = read_any(args.data, args.format)
    except (ValueError, DataFormatError, OSError) as e:
        _err(f"error: {e}")
        return 2
    queries, notes = heldout_queries(episodes, args.limit)
    for n in notes[:5]:
        _err(f"note: {n}")
    if not queries:
        _err(f"error: {args.data}: no held-out turn found (each episode's last session needs a main-speaker "
             "turn after a partner turn)")
        return 2
    if args.limit and len(queries) < args.limit:
        _err(f"note: {args.data} gives {len(queries)} held-out turns, fewer than --limit {args.limit}")
    try:
        builder = SystemBuilder.load(systems, options, lm=args.lm, encoder=args.encoder, adapter=args.adapter,
                                     device=args.device, max_new_tokens=args.max_new_tokens,
                                     budget_s=args.budget_s, log=_err)
    except (RegistryError, ModelNotFoundError, ValueError) as e:
        _err(f"error: {e}")
        return 1
    out = Path(args.out or f"compare-{Path(args.data).stem}")
    out.mkdir(parents=True, exist_ok=True)
    title = args.title or Path(args.data).name

    from tqdm import tqdm

    bar = tqdm(total=len(queries) * len(systems), unit="answer", desc="eval compare", file=sys.stderr,
               dynamic_ncols=True)

    def progress(stage, done, total):
        bar.n = done
        bar.set_postfix_str(stage[:60], refresh=False)
        bar.refresh()

    t0 = time.perf_counter()
    results = run_compare(queries, systems, builder, samples=args.samples, budget_s=args.budget_s,
                          records_path=out / "records.jsonl", reseed=lambda i: _reseed(args.seed + i),
                          progress=progress)
    bar.close()
    elapsed = time.perf_counter() - t0
    from engine.evaluation.responses_cli import load_classifier

    classifier, why = load_classifier(args.classifier, args.device)
    report = score(results, classifier=classifier, classifier_error=why, seed=args.seed)
    report["meta"] = {"systems": report.get("meta", {}), "data": str(args.data), "format": args.format,
                      "limit": args.limit, "samples": args.samples, "budget_s": args.budget_s,
                      "max_new_tokens": args.max_new_tokens, "seed": args.seed, "seconds": round(elapsed, 1),
                      "models": builder.describe()}
    table = markdown_table({**report, "meta": report["meta"]["systems"]}, title)
    (out / "table.md").write_text(table, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False, default=str), encoding="utf-8")
    png = chart(report, out / "compare.png", title) if report["systems"] else None
    if args.json:
        print(json.dumps(report, indent=1, allow_nan=False, default=str))
    else:
        print(table)
        print(f"wrote {out / 'table.md'}, {png or '(no chart: nothing scored)'}, {out / 'report.json'} "
              f"in {elapsed:.0f} s")
    if args.study:
        sink = getattr(args, "study_sink", None)
        if sink is None:
            _err("error: --study needs MemLab's annotation part (memlab[all]); the report is in "
                 f"{out / 'report.json'}")
            return 1
        try:
            where = sink.store_eval_report(args.study, report, campaign=args.campaign)
        except ValueError as e:
            _err(f"error: {e}")
            return 1
        _err(f"stored the report in {args.study} ({where})")
    return 0
