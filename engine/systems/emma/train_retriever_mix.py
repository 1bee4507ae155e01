"""Training EMMA's retriever (§4.2, App. E.2) from MiniLM on a mix of real data, measured on unseen LoCoMo.

Queries (context → the memories it needs):

* LoCoMo conversations not held out (:data:`engine.systems.emma.train_sources.LOCOMO_HELD_OUT`): a QA
  question → the observations whose evidence answers it; every other observation of the conversation is a
  hard negative;
* ConvAI2: the turns before a persona sentence is expressed → that sentence;
* the starter corpus: the context before a memory-tagged utterance → the tagged memories.

Only the context tower's transformer layers are trained; its token embeddings and the whole memory tower stay
the base encoder's (an asymmetric dual encoder: memory vectors are those of the base model, questions learn
to meet them).  That keeps the shipped file small (:func:`compact`: the trained layers in fp16, ~21 MB,
the rest read from the base encoder) and the cached memory vectors independent of the training.

Loss: the triplet loss of App. E.2 (cosine similarity, margin 0.2) with one negative per triple — drawn from
the query's own candidates (hard) with probability ``hard_fraction``, else from other records — plus every
other positive in the batch as an in-batch negative.  Both towers start as copies of the base encoder and
keep its pooling (MiniLM: mean, the pooling it was trained with; a BERT checkpoint without a sentence-
transformers pooling config: [CLS], as the paper).  Held-out figure: LoCoMo evidence recall@1/@5 over all
observations of each unseen conversation, exactly as ``bench/retrieval_locomo.py`` measures it, before and
after; the checkpoint is kept only if both improve (:func:`train`'s ``verdict``).

    python -m engine.systems.emma.train_retriever_mix --out DIR [--budget-s 900]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

from engine.systems.emma import train_sources as ts


def _retr():
    try:
        from engine.systems.emma import train_retriever as tr
    except ImportError:
        from engine.training import emma_retriever as tr
    return tr


def locomo_recall(ctx, mem, episodes, ks=(1, 5)) -> dict:
    """Evidence recall@k over every observation of each conversation (``bench/retrieval_locomo.py``'s rule)."""
    import torch

    from engine.backbones.encoding import encode
    from engine.systems.emma.formats import with_provenance

    hits = {k: 0 for k in ks}
    n = 0
    with torch.no_grad():
        for ep in episodes:
            texts = [with_provenance(m.text, m.about, m.session) for m in ep.memories]
            evid = [set(m.source_turns) for m in ep.memories]
            covered = set().union(*evid)
            qs = [(q["question"], set(q["evidence"])) for q in ep.meta.get("qa", []) if set(q["evidence"]) & covered]
            if not qs:
                continue
            mv = encode(mem, texts, max_length=32)
            qv = encode(ctx, [q for q, _ in qs], max_length=512)
            top = torch.topk(qv @ mv.T, max(ks), dim=-1).indices.tolist()
            for (q, gold), order in zip(qs, top):
                n += 1
                for k in ks:
                    hits[k] += any(evid[i] & gold for i in order[:k])
    return {f"recall@{k}": hits[k] / n if n else None for k in ks} | {"questions": n}


def train(out_dir: Path, *, budget_s: float = 900, lr: float = 2e-5, batch_size: int = 32,
          hard_fraction: float = 0.5, seed: int = 0, convai2_dialogues: int = 400) -> dict:
    from engine.backbones.embedded import default_encoder_path
    from engine.backbones.loading import load_encoder
    from engine.data.convai2 import read_convai2
    from engine.data.corpus.generator import generate_episodes
    from engine.systems.emma.retriever import encode_texts
    from engine.training.loop import TrainConfig
    from engine.training.loop import train as loop_train

    tr = _retr()
    base = str(default_encoder_path())
    enc = load_encoder(base)
    reasons = list(enc.plan.reasons)
    embed = lambda texts: encode_texts(enc, list(texts), 64)  # noqa: E731
    lo = ts.locomo_episodes()
    held = [e for e in lo if ts.is_held_out("locomo", e.id)]
    conv = read_convai2(ts.CONVAI2_FILE)[:convai2_dialogues]
    queries = {
        "locomo": ts.locomo_retrieval_queries(lo, held_out=False),
        "convai2": ts.convai2_retrieval_queries(conv, embed, held_out=False),
        "starter": tr.retrieval_queries(generate_episodes(150, seed=7)),
    }
    valid_q = ts.locomo_retrieval_queries(lo, held_out=True)
    reasons.append("training queries: " + ", ".join(f"{k} {len(v)}" for k, v in queries.items())
                   + f"; held-out LoCoMo conversations {', '.join(ts.LOCOMO_HELD_OUT)} ({len(valid_q)} questions)")
    all_q = [q for v in queries.values() for q in v]
    triples = tr.make_triples(all_q, fixed_negatives=False, hard_fraction=hard_fraction, seed=seed)
    valid = tr.make_triples(random.Random(seed).sample(valid_q, min(200, len(valid_q))), fixed_negatives=True,
                            hard_fraction=1.0, seed=seed + 1)
    ctx_model, mem_model = enc.model, copy.deepcopy(enc.model)
    model = tr.dual_encoder(ctx_model, mem_model, enc.pooling, in_batch_negatives=True)
    for name, p in model.named_parameters():  # only the context tower's transformer layers learn (see doc)
        p.requires_grad_(name.startswith("dialogue_encoder.") and ".embeddings." not in name)
    as_loaded = lambda m: tr._as_loaded(enc, m, enc.name)  # noqa: E731
    model.eval()
    before = locomo_recall(as_loaded(ctx_model), as_loaded(mem_model), held)
    model.train()
    pool = sorted({c for q in all_q for c in q.candidates})
    collator = tr.TripleCollator(enc.tokenizer, enc.tokenizer, pool, hard_fraction=hard_fraction, seed=seed)
    io = tr.RetrieverIO(base, enc.pooling, 512, 32)
    cfg = TrainConfig(epochs=1, lr=lr, batch_size=batch_size, patience=1, max_seconds=budget_s, eval_before=False,
                      eval_batch_size=batch_size, seed=seed, show_bar=False)
    t0 = time.time()
    result = loop_train(model, triples, valid, collate=collator, loss_fn=lambda m, b: m.loss(b), io=io,
                        out_dir=out_dir, config=cfg, reasons=reasons)
    model.eval()
    after = locomo_recall(as_loaded(ctx_model), as_loaded(mem_model), held)
    better = all((after[k] or 0) > (before[k] or 0) for k in ("recall@1", "recall@5"))
    report = {"before": before, "after": after, "beats_untrained": better, "triples": len(triples),
              "queries": {k: len(v) for k, v in queries.items()}, "held_out": list(ts.LOCOMO_HELD_OUT),
              "pooling": enc.pooling, "lr": lr, "batch_size": batch_size, "hard_fraction": hard_fraction,
              "in_batch_negatives": True, "steps": result.global_step, "status": result.status,
              "wall_s": time.time() - t0, "cpu_s": result.cpu_s, "reasons": result.reasons}
    (Path(out_dir) / "retriever-report.json").write_text(json.dumps(report, indent=1))
    return report


def compact(src: Path, dst: Path, base: str) -> Path:
    """The shipped form of a checkpoint trained by :func:`train`: the context tower's transformer layers in
    fp16 (keys ``dialogue_encoder.*``), with metadata ``from_base`` naming what the loader takes from the
    base encoder (the context tower's embeddings, the whole memory tower)."""
    from safetensors.torch import load_file, save_file

    try:
        from engine.systems.emma.checkpoints import read_metadata
    except ImportError:
        from engine.training.checkpoints import read_metadata

    state = load_file(str(src))
    meta = read_metadata(src)
    keep = {k: v.half().contiguous() for k, v in state.items()
            if k.startswith("dialogue_encoder.") and ".embeddings." not in k and not k.startswith("dialogue_encoder.embeddings.")}
    meta.update(from_base="dialogue_encoder.embeddings,memory_encoder", dtype="float16", base=base)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(keep, str(dst), metadata={k: str(v) for k, v in meta.items()})
    return dst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.systems.emma.train_retriever_mix",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--budget-s", type=float, default=900)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    rep = train(Path(args.out), budget_s=args.budget_s, lr=args.lr, batch_size=args.batch_size)
    print(json.dumps({k: v for k, v in rep.items() if k != "reasons"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
