"""Memory linking (EMMA §4.1 "Memory Linker") at session end: batched scoring of the two label words
(`positive`/`negative`, one forward pass per batch of pairs) vs one sampled generation per pair, on the same
pairs and models in one run. Prints one JSON line per number of pairs with medians and the ratio."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_models import load_models, synthetic_memories  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, nargs="*", default=[32, 256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)
    from engine.systems import generation as gen
    from engine.systems.emma.dialogue import DialogueModule

    lm, _encoder, desc = load_models()
    dialogue = DialogueModule(lm, link_batch_size=args.batch_size)
    for n in args.pairs:
        mems = [t for _, t, _ in synthetic_memories(n + 1)]
        pairs = [(mems[i + 1], mems[i]) for i in range(n)]

        def batched():
            t = time.perf_counter()
            p = dialogue.link_probabilities(pairs)
            return time.perf_counter() - t, int((p > 0.5).sum())

        def sampled():
            settings = gen.GenerationSettings(max_new_tokens=2, do_sample=True, seed=0)
            t = time.perf_counter()
            pos = sum(gen.generate_text(lm, dialogue.link_prompt(a, b), settings).lower().startswith("pos")
                      for a, b in pairs)
            return time.perf_counter() - t, pos

        batched()  # warm-up
        ours = [batched() for _ in range(args.repeats)]
        ref = [sampled() for _ in range(args.repeats)]
        mo, mr = statistics.median(x for x, _ in ours), statistics.median(x for x, _ in ref)
        print(json.dumps({"bench": "linking", "pairs": n, "batched_median_s": round(mo, 4),
                          "sampled_median_s": round(mr, 4), "ratio": round(mr / mo, 1),
                          "batch_size": args.batch_size, "linked_batched": ours[-1][1], "linked_sampled": ref[-1][1],
                          "generator": desc}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
