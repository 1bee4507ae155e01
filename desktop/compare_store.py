"""Compare-page votes: one JSON object per line in ``DATA_DIR/compare/votes.jsonl``.

Each vote is appended and fsynced the moment it is given (a crash loses nothing already voted),
with the transcript both sides produced, so the leaderboard can be recomputed and audited.
A malformed line is reported with its line number, not silently skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from desktop.leaderboard import OUTCOMES


def votes_path(data_dir) -> Path:
    return Path(data_dir) / "compare" / "votes.jsonl"


def append_vote(data_dir, left: str, right: str, outcome: str, *, blind: bool, transcript: dict,
                partners: list | None = None) -> dict:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    record = {"time": dt.datetime.now().isoformat(timespec="seconds"), "left": left, "right": right,
              "outcome": outcome, "blind": bool(blind), "partners": partners or [], "transcript": transcript}
    path = votes_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return record


def read_votes(data_dir) -> list[dict]:
    path = votes_path(data_dir)
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if n == sum(1 for _ in open(path, encoding="utf-8")):  # a torn last line from a kill
                    break
                raise ValueError(f"{path}: line {n}: malformed JSON ({e.msg})") from None
            for key in ("left", "right", "outcome"):
                if key not in rec:
                    raise ValueError(f"{path}: line {n}: field {key!r} missing")
            out.append(rec)
    return out
