"""EMMA retrieval on real long conversations: LoCoMo observations as memories, QA evidence as the gold.

Each LoCoMo conversation becomes one memory store: one memory per *observation* (stored as EMMA stores a
memory, with its provenance suffix, §4.1; docs/architecture.md "EMMA release conventions"), carrying the
observation's evidence turn ids.  For each QA pair the question is the retrieval context; a retrieval is a hit@k when one of the top-k memories by
Eq. (1) cosine similarity has an evidence turn among the question's evidence turns.  Questions whose evidence
no observation covers cannot be hit and are counted separately.

Encoders: the untrained all-MiniLM-L6-v2 (one encoder for both sides) and the trained EMMA retriever
(``memlab train emma-retriever``; two towers from its safetensors file).  Timing: the time per query with all
memories of the conversation encoded once and cached (one question encoding + one matrix-vector product, what
the EMMA agent does), against the reference of the released loop, which re-encodes every memory per query —
printed as a ratio measured in the same run.

    .venv/bin/python bench/retrieval_locomo.py [--retriever FILE] [--max-questions N]
"""

from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--encoder", help="base encoder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--retriever", help="trained retriever .safetensors (default: the one `memlab train "
                                       "emma-retriever` wrote to the user data dir)")
    p.add_argument("--max-questions", type=int, help="per conversation (default: all)")
    args = p.parse_args(argv)

    import torch

    from engine.backbones.embedded import default_encoder_path
    from engine.backbones.loading import load_encoder
    from engine.systems.emma.checkpoints import load_retriever_checkpoint
    from engine.systems.emma.paths import default_retriever_file

    if not Path(args.data).is_file():
        print(f"LoCoMo data not found at {args.data}; nothing to measure")
        return 0
    torch.set_grad_enabled(False)
    convs = conversations(Path(args.data), args.max_questions)
    base = args.encoder or str(default_encoder_path())
    enc = load_encoder(base)
    print(f"LoCoMo: {len(convs)} conversations, {sum(len(c[3]) for c in convs)} questions with evidence; "
          f"encoder {Path(base).name} on {enc.plan.summary()}, {torch.get_num_threads()} threads")
    rows = [evaluate("untrained MiniLM", enc, enc, convs)]
    trained = Path(args.retriever) if args.retriever else default_retriever_file(base)
    if trained.is_file():
        ctx, mem = load_retriever_checkpoint(trained, base)
        rows.append(evaluate(f"trained EMMA retriever ({trained})", ctx, mem, convs))
    else:
        print(f"no trained retriever at {trained}: run `memlab train emma-retriever` first (row skipped)")
    for r in rows:
        print(f"{r['encoder']}: recall@1 {r['recall@1']:.3f}  recall@5 {r['recall@5']:.3f}  "
              f"({r['answerable']} answerable, {r['unanswerable']} with evidence no observation covers); "
              f"{r['ms_per_query']:.1f} ms/query with {r['memories_per_conversation']:.0f} cached memories vs "
              f"{r['reference_ms_per_query']:.1f} ms re-encoding them (ratio "
              f"{r['reference_ms_per_query'] / r['ms_per_query']:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
