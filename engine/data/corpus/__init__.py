"""MemLab's MiSC-shaped starter corpus (EMMA paper §3): a deterministic, seeded template generator.

``generate_episodes(n, seed)`` builds episodes from the JSON templates in ``assets/corpus``;
``split(episodes, valid_fraction, seed)`` divides them into train and validation parts.
Torch-free (part of ``engine.data``).
"""

from __future__ import annotations

import random

from ..model import Episode
from .generator import GENERATOR, generate_episode, generate_episodes
from .templates import Templates, load_templates

__all__ = ["GENERATOR", "Templates", "generate_episode", "generate_episodes", "load_templates", "split"]


def split(episodes: list[Episode], valid_fraction: float, seed: int = 0) -> tuple[list[Episode], list[Episode]]:
    """Split episodes into ``(train, valid)`` by whole episodes (as MiSC splits by episode, §3).

    The choice is a seeded shuffle, so the same ``seed`` gives the same split; both parts keep
    the input order. With ``0 < valid_fraction`` and at least two episodes, each part gets at
    least one episode.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    n = len(episodes)
    n_valid = round(n * valid_fraction)
    if valid_fraction > 0 and n >= 2:
        n_valid = min(max(n_valid, 1), n - 1)
    order = list(range(n))
    random.Random(f"memlab-split/{seed}").shuffle(order)
    valid_idx = set(order[:n_valid])
    train = [e for i, e in enumerate(episodes) if i not in valid_idx]
    valid = [e for i, e in enumerate(episodes) if i in valid_idx]
    return train, valid
