"""EMMA's memory linker schedules (paper §4.1 "Memory Linker"; the released loop, papers/INDEX.md).

Two schedules, chosen by :class:`LinkSettings.schedule`:

* ``"session-end"`` (the paper): "connections are initially established within the memory generated in
  ongoing sessions. Subsequently, these connections extend to incorporate memories from previous sessions" —
  at session end the new memories are scored pairwise (new × new, later → earlier), then each new memory
  against earlier memories (new × earlier): all of them, or the ``candidates`` most similar by the memory
  encoder (0 = all).
* ``"per-turn"`` (the released code): on every bot turn the retrieved top-1 memory is scored against the
  other memories (again capped at ``candidates`` by similarity, 0 = all) and linked to the single best one
  whose p(positive) clears the threshold (top-1).

Pairs are scored by the dialogue module's label scoring (``positive``/``negative``; one forward pass per
batch, never sampled).  ``threshold``: p(positive) above which a pair is linked; ``None`` takes the
calibrated threshold shipped beside the adapter (``linker.json``: highest precision at a stated recall on
held-out pairs), else 0.5.  ``fan_out``: how many memories linked to the retrieved one a turn gets (§4.2
"include associated memories linked to those memories").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SCHEDULES = ("session-end", "per-turn")
LINKER_FILE = "linker.json"
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class LinkSettings:
    schedule: str = "session-end"
    candidates: int = 8  # earlier memories scored per new (or retrieved) memory, most similar first; 0 = all
    threshold: float | None = None  # None: the adapter's calibrated threshold, else 0.5
    fan_out: int = 4  # linked memories added to the retrieved one per turn

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"link schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.candidates < 0:
            raise ValueError(f"link candidates must be >= 0 (0 = all), got {self.candidates}")
        if self.fan_out < 0:
            raise ValueError(f"link fan-out must be >= 0, got {self.fan_out}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"link threshold must be in [0, 1], got {self.threshold}")


def calibrated_threshold(adapter_dir) -> tuple[float | None, str]:
    """(threshold, where it came from) from ``adapter_dir/linker.json``; (None, why not) without one."""
    if not adapter_dir:
        return None, "no adapter: default threshold"
    f = Path(adapter_dir) / LINKER_FILE
    if not f.is_file():
        return None, f"no {LINKER_FILE} beside the adapter: default threshold"
    try:
        d = json.loads(f.read_text())
        t = float(d["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"{f}: unreadable ({e}); default threshold"
    test = d.get("held_out_test") or {}
    p, r = test.get("precision"), test.get("recall")
    detail = (f", held-out precision {p:.2f} at recall {r:.2f}" if isinstance(p, float) and isinstance(r, float)
              else "")
    return t, f"calibrated threshold {t:.3f} from {f}{detail}"


def session_end_pairs(store, new_ids: list[str], candidates: int, refresh) -> list[tuple[str, str]]:
    """(newer, older) pairs of the paper's schedule: new × new (later → earlier), then new × earlier."""
    pairs = [(new_ids[j], new_ids[i]) for j in range(len(new_ids)) for i in range(j)]
    new_set = set(new_ids)
    earlier = [m.id for m in store.memories() if m.id not in new_set]
    if not earlier:
        return pairs
    if not candidates or len(earlier) <= candidates:
        for n in new_ids:
            pairs.extend((n, o) for o in earlier)
        return pairs
    refresh(store)
    for n in new_ids:
        hits = store.top_k(store.vector(n), candidates, exclude=new_set)
        pairs.extend((n, o) for o, _ in hits)
    return pairs


def per_turn_candidates(store, top_id: str, candidates: int) -> list[str]:
    """The memories the released loop scores against the retrieved ``top_id`` (capped by similarity)."""
    others = [m.id for m in store.memories() if m.id != top_id]
    if not candidates or len(others) <= candidates:
        return others
    return [o for o, _ in store.top_k(store.vector(top_id), candidates, exclude={top_id})]
