"""Memory linking at session end (EMMA §4.1 "Memory Linker"): our batched scoring of the two label words
(`positive`/`negative`; the link prompts' shared prefix run once and reused) vs the published release's
reference — one sampled generation per pair with the same chat prompt, until EOS or at most 8 new tokens —
on the same pairs and models in one run. Prints one JSON line per (layout, number of pairs) with medians,
the ratio (reference / ours) and the settings of both sides.

Pair layouts:
  session-end  what EMMA scores at a session end (engine/systems/emma/agent.py link_candidates_for):
               each new memory against up to 32 earlier memories, pairs grouped by the new memory
  chain        (m[i+1], m[i]): every pair has a different newer memory (worst case for prefix sharing)
"""

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

REFERENCE_MAX_NEW_TOKENS = 8  # the release samples the label word (until EOS), not a fixed 2 tokens
CANDIDATES_PER_NEW = 32  # EmmaAgent(link_candidates=32)


def reference_settings():
    """Decoding of the reference linker: sampling (the live-chat defaults), until EOS or 8 new tokens."""
    from engine.systems.generation import GenerationSettings

    return GenerationSettings(max_new_tokens=REFERENCE_MAX_NEW_TOKENS, do_sample=True, seed=0)


def reference_settings_json() -> dict:
    s = reference_settings()
    return {"sampling": s.do_sample, "max_new_tokens": s.max_new_tokens, "stop": "EOS or max_new_tokens",
            "temperature": s.temperature, "top_p": s.top_p, "repetition_penalty": s.repetition_penalty,
            "prompt": "the same chat prompt as ours (DialogueModule.link_prompt)"}


def sampled_link(lm, prompt: str) -> str:
    """The reference: one sampled generation for one pair, read as a label (positive/negative/other)."""
    from engine.systems import generation as gen

    text = gen.generate_text(lm, prompt, reference_settings()).strip().lower()
    return "positive" if text.startswith("pos") else "negative" if text.startswith("neg") else "other"


def make_pairs(n: int, layout: str) -> list[tuple[str, str]]:
    """``n`` (newer, older) memory pairs in the given layout (see the module docstring)."""
    if layout == "chain":
        mems = [t for _, t, _ in synthetic_memories(n + 1)]
        return [(mems[i + 1], mems[i]) for i in range(n)]
    per_new = min(CANDIDATES_PER_NEW, n)
    n_new = -(-n // per_new)
    mems = [t for _, t, _ in synthetic_memories(per_new + n_new)]
    older, newer = mems[:per_new], mems[per_new:]
    return [(newer[j], older[i]) for j in range(n_new) for i in range(per_new)][:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, nargs="*", default=[32, 128])
    ap.add_argument("--layouts", nargs="*", default=["session-end", "chain"], choices=["session-end", "chain"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--uncached", action="store_true",
                    help="also time batched scoring without the shared prefix (the path before prefix caching)")
    args = ap.parse_args(argv)
    from engine.systems import generation as gen
    from engine.systems.emma import formats
    from engine.systems.emma.dialogue import DialogueModule

    lm, _encoder, desc = load_models()
    dialogue = DialogueModule(lm, link_batch_size=args.batch_size)
    for layout in args.layouts:
        for n in args.pairs:
            pairs = make_pairs(n, layout)
            prompts = [dialogue.link_prompt(a, b) for a, b in pairs]

            def batched():
                t = time.perf_counter()
                p = dialogue.link_probabilities(pairs)
                return time.perf_counter() - t, int((p > 0.5).sum())

            def uncached():
                t = time.perf_counter()
                gen.score_labels(lm, prompts, formats.LINK_LABELS, batch_size=args.batch_size, share_prefix=False)
                return time.perf_counter() - t, None

            def sampled():
                t = time.perf_counter()
                labels = [sampled_link(lm, p) for p in prompts]
                return time.perf_counter() - t, {k: labels.count(k) for k in ("positive", "negative", "other")}

            batched()  # warm-up (the shared prefix is cached from here on, as across session ends)
            ours = [batched() for _ in range(args.repeats)]
            stats = dict(dialogue.last_link_stats)
            ref = [sampled() for _ in range(args.repeats)]
            mo, mr = statistics.median(x for x, _ in ours), statistics.median(x for x, _ in ref)
            tokens = [len(lm.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
            line = {"bench": "linking", "layout": layout, "pairs": n, "repeats": args.repeats,
                    "batched_median_s": round(mo, 4), "sampled_median_s": round(mr, 4), "ratio": round(mr / mo, 2)}
            if args.uncached:
                mu = statistics.median(uncached()[0] for _ in range(args.repeats))
                line.update(uncached_batched_median_s=round(mu, 4), ratio_vs_uncached=round(mr / mu, 2),
                            prefix_speedup=round(mu / mo, 2))
            line.update(batch_size=args.batch_size, prompt_tokens_mean=round(statistics.mean(tokens), 1),
                        shared_prefix_tokens=stats.get("prefix_tokens"), prefix_fallback=stats.get("fallback"),
                        linked_batched=ours[-1][1], sampled_labels=ref[-1][1], reference=reference_settings_json(),
                        generator=desc)
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
