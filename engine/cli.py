"""Engine sub-commands of ``memlab``; each area registers its own (``register(subparsers)``)."""

from __future__ import annotations

import importlib

AREA_MODULES = (
    "engine.backbones.cli",   # memlab models prepare|info
    "engine.data.corpus_cli",  # memlab corpus generate
    "engine.chat.cli",         # memlab chat
    "engine.training.cli",     # memlab train <system trainer> (from the registry)
    "engine.evaluation.cli",   # memlab eval responses (| compare)
    "engine.selfplay.cli",     # memlab selfplay
)


def register(sub) -> None:
    for name in AREA_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name or (e.name and name.startswith(e.name + ".")):
                continue  # that area is not built/installed
            raise
        module.register(sub)
