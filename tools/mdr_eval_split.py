"""Write the 200 ConvAI2 validation dialogues whose held-out (last) bot turn no stage of the shipped MDR trained on.

The shipped MDR (README, "MDR") trained on dialogues 150–999 of ``personachat_valid.json`` (5,377 examples),
shuffled with its seed (2022) by ``engine.systems.mdr.train``; a stage saw at most the first 1,024. This
re-builds that order and keeps the first 200 dialogues (from 0 on) whose last bot turn is not among them.

    python tools/mdr_eval_split.py ../shared/datasets/convai2/personachat_valid.json convai2_eval200.json
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRAIN = (150, 1000)   # dialogues the stages drew from
SEEN = 1024           # the most examples one stage saw (the sentence stage's --max-train-examples)
SEED = 2022           # MdrConfig.seed: the shuffle of the training examples


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    from engine.data.readers import read_any
    from engine.evaluation.heldout import heldout_queries
    from engine.systems.mdr.data import examples_from_episodes

    src, out = argv
    raw = json.loads(Path(src).read_text(encoding="utf-8"))
    episodes = read_any(src, "convai2")
    examples = list(examples_from_episodes(episodes[TRAIN[0]:TRAIN[1]]))
    random.Random(SEED).shuffle(examples)
    trained = {(e.episode, e.turn) for e in examples[:SEEN]}
    keep = []
    for i, ep in enumerate(episodes):
        queries, _ = heldout_queries([ep])
        if queries and (ep.id, queries[0].target.id) not in trained:
            keep.append(i)
        if len(keep) == 200:
            break
    Path(out).write_text(json.dumps([raw[i] for i in keep]), encoding="utf-8")
    print(f"wrote {len(keep)} dialogues to {out} ({len(examples)} training examples; "
          f"{sum(1 for i in range(keep[-1] + 1) if i not in keep)} dialogues skipped: their last turn was trained on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
