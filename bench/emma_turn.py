"""One EMMA bot turn with N stored memories: our path vs the released per-turn loop, same models, same run.

Ours (paper §4.2 as built in engine/systems/emma): one context encoding, top-1 over the cached memory
matrix (+ linked memories), one generation. Reference (the published release's loop, docs/architecture.md "EMMA release conventions"):
re-encode the context (padded to 512 tokens) and every memory one by one (padded to 32 tokens: the release's
encoding lengths, App. E.2 "the max length for the dialogue context encoder is 512, and ... for the memory
encoder is 32"), then one sampled generation per
stored memory to find its links (same chat prompt as our linker, until EOS or 8 new tokens: bench/linking.py),
then the same reply generation. A reference turn estimated beyond --ref-budget-s is not run: its time is
extrapolated linearly in N from the last measured N and the line says so (reference_estimated).

Prints one JSON line per N in {10, 100, 1000}: medians (seconds), ratio = reference / ours, and
ours(N) / ours(10). Targets: ratio >= 20 at N=100; ours(1000) <= 1.5 x ours(10).
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
from linking import reference_settings_json, sampled_link  # noqa: E402

MAX_NEW = 16
CONTEXT_MAX, MEMORY_MAX = 512, 32  # the release's encoding lengths (App. E.2)
UTTERANCE = "Hi Alice, did Bob tell you how his cat is doing after the vet visit?"


def build_agent(lm, encoder, n):
    from engine.data.model import Speaker
    from engine.memory import MemoryStore
    from engine.systems.generation import GenerationSettings
    from engine.systems.registry import make_agent

    agent = make_agent("emma", lm, encoder, settings=GenerationSettings(
        max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW, do_sample=True, seed=0))
    store = MemoryStore("Alice")
    mems = [store.add(who, text, s) for who, text, s in synthetic_memories(n)]
    for i in range(1, n, 3):  # some links, as a session end would leave them
        store.link(mems[i].id, mems[i - 1].id) if mems[i].session >= mems[i - 1].session else None
    agent.store = store
    agent.retriever.refresh(store)  # vectors are computed when memories are stored (session end)
    agent.start_session(Speaker("Alice", "teacher"), Speaker("Carol", "nurse"), 3)
    return agent


def our_turn(agent) -> float:
    agent.turns = []
    t = time.perf_counter()
    for _ in agent.respond(UTTERANCE):
        pass
    return time.perf_counter() - t


def reference_turn(agent) -> float:
    """The released loop: everything recomputed per turn, one memory at a time."""
    import torch

    enc, lm, store = agent.retriever.context_encoder, agent.dialogue.lm, agent.store
    mems = store.memories()
    agent.turns = []
    t = time.perf_counter()
    with torch.inference_mode():
        def embed(text, max_length):
            b = enc.tokenizer([text], padding="max_length", truncation=True, max_length=max_length,
                              return_tensors="pt")
            h = enc.model(**b).last_hidden_state
            v = (h * b["attention_mask"].unsqueeze(-1)).sum(1) / b["attention_mask"].sum(1, keepdim=True)
            return torch.nn.functional.normalize(v, dim=-1)[0]

        c = embed(UTTERANCE, CONTEXT_MAX)
        vecs = [embed(m.text, MEMORY_MAX) for m in mems]  # every memory re-encoded, one by one
        top = max(range(len(mems)), key=lambda i: float(vecs[i] @ c))
        linked = []
        for m in mems:  # one sampled generation per stored memory to find links
            if sampled_link(lm, agent.dialogue.link_prompt(mems[top].text, m.text)) == "positive":
                linked.append(m.text)
    prompt = agent.dialogue.reply_prompt(agent.main, agent.partner, [(mems[top].text, linked[:4])],
                                         agent.session_index, [(agent.partner.name, UTTERANCE)])
    for _ in agent.dialogue.stream_reply(prompt):
        pass
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, nargs="*", default=[10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ref-budget-s", type=float, default=300.0,
                    help="fewer reference repeats when slow; skip (and say so) a reference turn estimated beyond it")
    args = ap.parse_args(argv)
    lm, encoder, desc = load_models()
    base = None
    per_memory, last_n = None, None  # reference seconds per stored memory, from the last measured N
    for n in args.n:
        agent = build_agent(lm, encoder, n)
        our_turn(agent)  # warm-up
        ours = statistics.median(our_turn(agent) for _ in range(args.repeats))
        base = base if base is not None else ours
        line = {"bench": "emma_turn", "n_memories": n, "ours_median_s": round(ours, 4),
                "ours_vs_first_n": round(ours / base, 2), "ours_repeats": args.repeats}
        estimate = None if per_memory is None else per_memory * n
        if estimate is not None and estimate > args.ref_budget_s:
            line.update(reference_median_s=None, ratio=None, reference_repeats=0,
                        reference_estimated=True, reference_estimated_s=round(estimate, 1),
                        ratio_estimated=round(estimate / ours, 1),
                        reference_note=f"NOT MEASURED: one reference turn would take about {estimate:.0f} s "
                                       f"(> --ref-budget-s {args.ref_budget_s:.0f}); estimated linearly in N from "
                                       f"the last measured N ({last_n}: {per_memory:.3f} s per stored memory)")
        else:
            refs = [reference_turn(agent)]
            while len(refs) < args.repeats and sum(refs) * (len(refs) + 1) / len(refs) < args.ref_budget_s:
                refs.append(reference_turn(agent))
            ref = statistics.median(refs)
            per_memory, last_n = ref / n, n
            line.update(reference_median_s=round(ref, 4), ratio=round(ref / ours, 1), reference_repeats=len(refs))
        line.update(max_new_tokens=MAX_NEW, reference_linker=reference_settings_json(),
                    reference_encoding={"context_tokens": CONTEXT_MAX, "memory_tokens": MEMORY_MAX}, generator=desc,
                    encoder=encoder.name)
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
