"""EMMA's options (EMMA paper §4), validated: the registry record's options build this."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmmaConfig:
    link_threshold: float = 0.5  # p(positive) above which the linker links two memories (§4.1 "Memory Linker")
    link_candidates: int = 32  # per new memory, earlier memories scored (most similar first); 0 = all of them
    link_batch_size: int = 32  # memory pairs per linker forward pass

    def __post_init__(self):
        if not 0.0 <= self.link_threshold <= 1.0:
            raise ValueError(f"link_threshold must be in [0, 1], got {self.link_threshold}")
        if self.link_candidates < 0:
            raise ValueError(f"link_candidates must be >= 0 (0 = every earlier memory), got {self.link_candidates}")
        if self.link_batch_size < 1:
            raise ValueError(f"link_batch_size must be >= 1, got {self.link_batch_size}")
