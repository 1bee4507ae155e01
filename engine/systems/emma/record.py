"""EMMA's registry record (docs/architecture.md, "The system registry")."""

from __future__ import annotations

from engine.systems.registry import Option, SystemRecord

from .config import EmmaConfig


def build(models, options: dict):
    from .agent import EmmaAgent
    from .model import dialogue_module, retriever

    cfg = EmmaConfig(**options)
    return EmmaAgent(dialogue_module(models, cfg.link_batch_size), retriever(models),
                     link_threshold=cfg.link_threshold, link_candidates=cfg.link_candidates or None)


RECORDS = [
    SystemRecord(
        name="emma", label="EMMA",
        help="EMMA: egocentric memories about each speaker, linked across sessions (EMMA paper §4)",
        needs=frozenset({"generator", "encoder"}), keeps_memory=True,
        capabilities=frozenset({"memory_view", "rewind"}),
        options=(Option("link_threshold", float, EmmaConfig.link_threshold, "p(positive) above which memories are linked"),
                 Option("link_candidates", int, EmmaConfig.link_candidates,
                        "earlier memories the linker scores per new memory (0 = all)"),
                 Option("link_batch_size", int, EmmaConfig.link_batch_size, "memory pairs per linker forward pass")),
        build=build, train_module="engine.systems.emma.train", order=10),
]
