"""EMMA retrieval on real long conversations: LoCoMo observations as memories, QA evidence as the gold.

Each LoCoMo conversation becomes one memory store: one memory per *observation* (stored as EMMA stores a
memory, with its provenance suffix, §4.1; docs/architecture.md "EMMA release conventions"), carrying the
observation's evidence turn ids.  For each QA pair the question is the retrieval context; a retrieval is a hit@k when one of the top-k memories by
Eq. (1) cosine similarity has an evidence turn among the question's evidence turns.  Questions whose evidence
no observation covers cannot be hit and are counted separately.

Encoders: the untrained all-MiniLM-L6-v2 (one encoder for both sides), the retriever MemLab ships
(``assets/retrievers/``; measured as shipped, no training step) and any ``--retriever FILE``.  Each is measured
on all conversations and, when a checkpoint names the LoCoMo conversations it was trained on (metadata
``trained_on_locomo``), on the ``unseen`` ones only — the fair comparison.  Timing: the time per query with all
memories of the conversation encoded once and cached (one question encoding + one matrix-vector product, what
the EMMA agent does), against the reference of the released loop, which re-encodes every memory per query —
printed as a ratio measured in the same run.

    .venv/bin/python bench/retrieval_locomo.py [--data FILE] [--retriever FILE] [--max-questions N]

Prints one JSON line per encoder and split: recall@1, recall@5, ms per query (cached memory vectors) and the
reference (re-encoding every memory per query) with their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets" / "locomo" / "locomo_dev.json"


def conversations(path: Path, max_questions: int | None):
    """[(memory texts, memory evidence sets, [(question, evidence set)])] per LoCoMo conversation."""
    from engine.data.locomo import read_locomo
    from engine.systems.emma.formats import with_provenance

    out = []
    for ep in read_locomo(path):
        texts = [with_provenance(m.text, m.about, m.session) for m in ep.memories]
        evid = [set(m.source_turns) for m in ep.memories]
        qs = [(q["question"], set(q["evidence"])) for q in ep.meta.get("qa", []) if q["evidence"]]
        out.append((ep.id, texts, evid, qs[:max_questions] if max_questions else qs))
    return out


def evaluate(name, ctx, mem, convs, ks=(1, 5), reference_queries: int = 3) -> dict:
    """Recall@k over answerable questions, and per-query timings (cached vs re-encoding every memory)."""
    import torch

    from engine.backbones.encoding import encode

    hits = {k: 0 for k in ks}
    answerable = unanswerable = 0
    cached_ms, reference_ms = [], []
    for cid, texts, evid, qs in convs:
        mvecs = encode(mem, texts, max_length=32)  # all memories of the conversation, encoded once
        covered = set().union(*evid) if evid else set()
        for qi, (question, gold) in enumerate(qs):
            t0 = time.perf_counter()
            q = encode(ctx, [question], max_length=512)[0]
            order = torch.topk(mvecs @ q, max(ks)).indices.tolist()
            cached_ms.append((time.perf_counter() - t0) * 1000)
            if qi < reference_queries:  # the released loop: re-encode every memory for every query
                t0 = time.perf_counter()
                again = encode(mem, texts, max_length=32)
                torch.topk(again @ encode(ctx, [question], max_length=512)[0], max(ks))
                reference_ms.append((time.perf_counter() - t0) * 1000)
            if not gold & covered:
                unanswerable += 1
                continue
            answerable += 1
            for k in ks:
                hits[k] += any(evid[i] & gold for i in order[:k])
    res = {f"recall@{k}": hits[k] / answerable if answerable else None for k in ks}
    res.update(encoder=name, answerable=answerable, unanswerable=unanswerable,
               ms_per_query=statistics.median(cached_ms), reference_ms_per_query=statistics.median(reference_ms),
               memories_per_conversation=statistics.mean(len(c[1]) for c in convs))
    return res


def shipped_retriever() -> Path | None:
    """The retriever checkpoint MemLab ships for the embedded encoder (None when it ships none)."""
    f = ROOT / "assets" / "retrievers" / "emma-all-minilm-l6-v2" / "retriever.safetensors"
    return f if f.is_file() else None


def trained_on(path: Path) -> set[str]:
    from engine.systems.emma.checkpoints import read_metadata

    return {c for c in read_metadata(path).get("trained_on_locomo", "").split(",") if c}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DATA), help="any LoCoMo JSON file (default: ../shared/datasets/locomo)")
    p.add_argument("--encoder", help="base encoder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--retriever", action="append", default=[],
                   help="a retriever .safetensors to measure besides the shipped one (repeatable)")
    p.add_argument("--max-questions", type=int, help="per conversation (default: all)")
    args = p.parse_args(argv)

    import torch

    from engine.backbones.embedded import default_encoder_path
    from engine.backbones.loading import load_encoder
    from engine.systems.emma.checkpoints import load_retriever_checkpoint

    if not Path(args.data).is_file():
        print(json.dumps({"bench": "retrieval_locomo", "error": f"LoCoMo data not found at {args.data}"}))
        return 0
    torch.set_grad_enabled(False)
    convs = conversations(Path(args.data), args.max_questions)
    base = args.encoder or str(default_encoder_path())
    enc = load_encoder(base)
    files = ([("shipped EMMA retriever", shipped_retriever())] if shipped_retriever() else []) + \
        [(f"retriever {f}", Path(f)) for f in args.retriever]
    seen = set().union(*(trained_on(f) for _, f in files)) if files else set()
    splits = {"all": convs}
    if seen:
        splits["unseen"] = [c for c in convs if c[0] not in seen]
    encoders = [("untrained MiniLM", lambda: (enc, enc), None)]
    for name, f in files:
        encoders.append((name, lambda f=f: load_retriever_checkpoint(f, base), f))
    for name, load, f in encoders:
        ctx, mem = load()
        for split, cs in splits.items():
            if not cs:
                continue
            r = evaluate(name, ctx, mem, cs)
            print(json.dumps({"bench": "retrieval_locomo", "encoder": name, "checkpoint": str(f) if f else None,
                              "split": split, "conversations": [c[0] for c in cs],
                              "recall@1": round(r["recall@1"], 4), "recall@5": round(r["recall@5"], 4),
                              "answerable": r["answerable"], "unanswerable": r["unanswerable"],
                              "ms_per_query": round(r["ms_per_query"], 2),
                              "reference_ms_per_query": round(r["reference_ms_per_query"], 2),
                              "ratio": round(r["reference_ms_per_query"] / r["ms_per_query"], 1),
                              "memories_per_conversation": round(r["memories_per_conversation"], 1),
                              "device": enc.plan.summary(), "threads": torch.get_num_threads()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
