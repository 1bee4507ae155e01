"""``memlab train <name>``: each system adds its own sub-commands from its ``train.py`` (named by its registry
record's ``train_module``), plus the trainers below that belong to no single system.

See docs/architecture.md, "The system registry".
"""

from __future__ import annotations

import importlib

# Trainers that are not a system's (e.g. a metric's classifier): dotted modules with ``register(train_subparsers)``.
TRAINER_MODULES: tuple[str, ...] = (
    "engine.training.consistency",  # memlab train consistency (the metrics' classifier, not a system)
)


def train_modules() -> list[str]:
    """The modules that add ``memlab train`` sub-commands: the systems' (registry order), then TRAINER_MODULES."""
    from engine.systems import registry

    mods = [r.train_module for r in registry.systems() if r.train_module]
    return list(dict.fromkeys(mods + list(TRAINER_MODULES)))


def register(sub) -> None:
    p = sub.add_parser("train", help="train a system's components (memlab train -h lists them)")
    tsub = p.add_subparsers(dest="train_command", required=True)
    for name in train_modules():
        importlib.import_module(name).register(tsub)
