"""EMMA's options (EMMA paper §4), validated: the registry record's options build this."""

from __future__ import annotations

from dataclasses import dataclass

from .linking import SCHEDULES
from .presets import PRESETS

LINKERS = ("auto", "dialogue", "encoder-head")
GROUNDINGS = ("likelihood", "consistency", "none")


@dataclass(frozen=True)
class EmmaConfig:
    # p(positive) above which two memories are linked (§4.1 "Memory Linker"); < 0: the calibrated threshold
    # shipped with the linker (highest precision at a stated recall on held-out pairs), else 0.5
    link_threshold: float = -1.0
    link_candidates: int = 8  # per new (or retrieved) memory, other memories scored, most similar first; 0 = all
    link_schedule: str = "session-end"  # the paper's (new×new, then new×earlier) or "per-turn" (the release's)
    link_fan_out: int = 4  # memories linked to the retrieved one given with it per turn (§4.2)
    link_batch_size: int = 32  # memory pairs per linker forward pass
    linker: str = "auto"  # auto: the shipped choice for the embedded preset (held-out figures), else dialogue
    grounding: str = "likelihood"  # the check a memory candidate passes before it is stored
    grounding_min_gain: float = 0.3  # nats/token the subject's turns must add to a candidate's likelihood
    preset: str = "embedded"

    def __post_init__(self):
        if not self.link_threshold <= 1.0:
            raise ValueError(f"link_threshold must be <= 1 (negative = calibrated), got {self.link_threshold}")
        if self.link_candidates < 0:
            raise ValueError(f"link_candidates must be >= 0 (0 = every other memory), got {self.link_candidates}")
        if self.link_schedule not in SCHEDULES:
            raise ValueError(f"link_schedule must be one of {', '.join(SCHEDULES)}, got {self.link_schedule!r}")
        if self.link_fan_out < 0:
            raise ValueError(f"link_fan_out must be >= 0, got {self.link_fan_out}")
        if self.link_batch_size < 1:
            raise ValueError(f"link_batch_size must be >= 1, got {self.link_batch_size}")
        if self.linker not in LINKERS:
            raise ValueError(f"linker must be one of {', '.join(LINKERS)}, got {self.linker!r}")
        if self.grounding not in GROUNDINGS:
            raise ValueError(f"grounding must be one of {', '.join(GROUNDINGS)}, got {self.grounding!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
