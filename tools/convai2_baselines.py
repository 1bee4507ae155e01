"""Write ``memlab eval responses`` records for ConvAI2 validation turns with reference-free baselines.

    python tools/convai2_baselines.py ../shared/datasets/convai2/personachat_valid.json OUT_DIR \
        [--held-out-only [--max-dialogues N]]

One ``.jsonl`` per baseline (id, response, reference = the gold bot reply, persona = the bot's persona lines,
query = the user turn it answers; ``__SILENCE__`` openers have no query):

* ``gold``           the reference itself (sanity check: BLEU-1 = ROUGE = 1)
* ``copy-query``     the previous turn (the user's utterance) copied back
* ``copy-persona``   the persona line sharing most content words with the query (first line on a tie)
* ``other-dialogue`` the reply at the same position of another, seeded-random dialogue

``--held-out-only`` keeps the dialogues ``memlab train consistency`` held out (same seeded split), so Con.S is
measured on dialogues the classifier never saw.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from engine.metrics.text import content_tokens
from engine.training.consistency_pairs import SILENCE, split_indices


def records(dialogues, indices, seed: int = 0) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    out = {k: [] for k in ("gold", "copy-query", "copy-persona", "other-dialogue")}
    for d in indices:
        dia = dialogues[d]
        persona = [p for p in dia["persona"] if p.strip()]
        for i, pair in enumerate(dia["dialogue"]):
            if len(pair) != 2:
                continue
            user, bot = pair
            base = {"id": f"d{d}t{i}", "reference": bot, "persona": persona}
            if user != SILENCE:
                base["query"] = user
            q = set(content_tokens(user))
            best = max(persona, key=lambda p: len(q & set(content_tokens(p)))) if persona else ""
            other = dialogues[rng.choice([j for j in range(len(dialogues)) if j != d])]["dialogue"]
            other_reply = other[min(i, len(other) - 1)][1]
            for name, resp in (("gold", bot), ("copy-query", "" if user == SILENCE else user),
                               ("copy-persona", best), ("other-dialogue", other_reply)):
                out[name].append(dict(base, response=resp))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("convai2")
    ap.add_argument("out")
    ap.add_argument("--held-out-only", action="store_true")
    ap.add_argument("--held-out", type=float, default=0.15, help="as memlab train consistency --held-out")
    ap.add_argument("--max-dialogues", type=int, help="as memlab train consistency --max-dialogues")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    dialogues = json.loads(Path(a.convai2).read_text(encoding="utf-8"))
    if a.max_dialogues:
        dialogues = dialogues[:a.max_dialogues]
    indices = split_indices(len(dialogues), a.held_out, a.seed)[1] if a.held_out_only else range(len(dialogues))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in records(dialogues, list(indices), a.seed).items():
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{path}: {len(rows)} records")


if __name__ == "__main__":
    main()
