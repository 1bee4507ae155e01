"""Train and calibrate the encoder link head (:mod:`engine.systems.emma.link_head`) on realistic pair mixes.

Training pairs: the starter corpus's annotated links against unlinked and cross-episode pairs, and LoCoMo
observation pairs (related = evidence of one QA question; see :mod:`engine.systems.emma.train_sources`),
about one positive in five.  Held-out pairs: unseen starter episodes and the held-out LoCoMo conversations,
shuffled and split in two — the threshold is calibrated on the first half (highest precision at recall ≥
``target_recall``), precision/recall are reported on the second.

    python -m engine.systems.emma.train_link_head --out FILE [--target-recall 0.5]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from engine.systems.emma import formats, link_head
from engine.systems.emma import train_sources as ts


def _pairs(held_out: bool, seed: int):
    from engine.data.corpus.generator import generate_episodes

    lo = ts.locomo_episodes()
    starter = generate_episodes(24 if held_out else 120, seed=1001 if held_out else 7)
    out = ts.starter_link_pairs(starter, seed=seed) + ts.locomo_link_pairs(lo, held_out=held_out, seed=seed)
    return [(e.fields["m1"], e.fields["m2"], int(e.target == formats.LINK_LABELS[0]), ts.source_of(e)) for e in out]


def main(argv=None) -> int:
    from engine.backbones.embedded import default_encoder_path
    from engine.backbones.loading import load_encoder
    from engine.systems.emma.retriever import encode_texts
    from engine.systems.emma.train_mix import auc, calibrate_threshold, precision_recall

    p = argparse.ArgumentParser(prog="python -m engine.systems.emma.train_link_head")
    p.add_argument("--out", required=True)
    p.add_argument("--target-recall", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.process_time()
    enc = load_encoder(str(default_encoder_path()))
    train, held = _pairs(False, args.seed), _pairs(True, args.seed + 1)
    random.Random(args.seed).shuffle(held)
    texts = sorted({formats.strip_provenance(t) for a, b, _, _ in train + held for t in (a, b)})
    vecs = encode_texts(enc, texts, 32, batch_size=64)
    idx = {t: i for i, t in enumerate(texts)}

    def uv(pairs):
        u = vecs[[idx[formats.strip_provenance(a)] for a, _, _, _ in pairs]]
        v = vecs[[idx[formats.strip_provenance(b)] for _, b, _, _ in pairs]]
        return u, v, np.array([y for _, _, y, _ in pairs])

    u, v, y = uv(train)
    head = link_head.fit(u, v, y, seed=args.seed)
    hu, hv, hy = uv(held)
    probs = head.probabilities(hu, hv).tolist()
    cos = (hu * hv).sum(-1).tolist()
    half = len(held) // 2
    cal = calibrate_threshold(probs[:half], hy[:half].tolist(), args.target_recall)
    test = precision_recall(probs[half:], hy[half:].tolist(), cal["threshold"])
    cos_cal = calibrate_threshold(cos[:half], hy[:half].tolist(), args.target_recall)
    report = {
        "train_pairs": len(train), "train_positive_share": float(y.mean()),
        "held_out_pairs": len(held), "held_out_positive_share": float(hy.mean()),
        "target_recall": args.target_recall, "calibration": cal | {"pairs": half}, "test": test,
        "auc": auc(probs, hy.tolist()),
        "by_source_auc": {s: auc([p for p, r in zip(probs, held) if r[3] == s], [r[2] for r in held if r[3] == s])
                          for s in ("starter", "locomo")},
        "untrained_cosine": {"auc": auc(cos, hy.tolist()), "calibration": cos_cal,
                             "test": precision_recall(cos[half:], hy[half:].tolist(), cos_cal["threshold"])},
        "encoder": enc.name, "cpu_s": time.process_time() - t0,
    }
    head.threshold = cal["threshold"]
    head.meta = {k: report[k] for k in ("target_recall", "calibration", "test", "auc", "train_pairs", "held_out_pairs")}
    head.meta["held_out_test"] = test
    head.save(args.out)
    Path(str(args.out) + ".json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
