"""EMMA's registry record (docs/architecture.md, "The system registry")."""

from __future__ import annotations

from engine.systems.registry import Option, SystemRecord

from .config import GROUNDINGS, LINKERS, EmmaConfig
from .linking import SCHEDULES
from .presets import PRESETS


def build(models, options: dict):
    from .agent import EmmaAgent
    from .model import dialogue_module, link_head, retriever

    cfg = EmmaConfig(**options)
    dialogue = dialogue_module(models, cfg.link_batch_size)
    head = link_head(models, cfg.linker)
    return EmmaAgent(dialogue, retriever(models), link_threshold=None if cfg.link_threshold < 0 else cfg.link_threshold,
                     link_candidates=cfg.link_candidates, link_schedule=cfg.link_schedule, link_fan_out=cfg.link_fan_out,
                     grounding=cfg.grounding, grounding_min_gain=cfg.grounding_min_gain, preset=cfg.preset,
                     link_head=head)


_C = EmmaConfig
RECORDS = [
    SystemRecord(
        name="emma", label="EMMA",
        help="EMMA: egocentric memories about each speaker, linked across sessions (EMMA paper §4)",
        needs=frozenset({"generator", "encoder"}), keeps_memory=True,
        capabilities=frozenset({"memory_view", "rewind"}),
        options=(Option("link_threshold", float, _C.link_threshold,
                        "p(positive) above which memories are linked; negative = the calibrated threshold"),
                 Option("link_candidates", int, _C.link_candidates,
                        "other memories the linker scores per new (or retrieved) memory, most similar first (0 = all)"),
                 Option("link_schedule", str, _C.link_schedule,
                        "session-end: the paper's new×new then new×earlier; per-turn: the release's top-1 every turn",
                        choices=SCHEDULES),
                 Option("link_fan_out", int, _C.link_fan_out, "linked memories given with the retrieved one"),
                 Option("link_batch_size", int, _C.link_batch_size, "memory pairs per linker forward pass"),
                 Option("linker", str, _C.linker, "who scores links: the dialogue module (paper) or the encoder "
                        "link head; auto = the shipped choice for the embedded preset", choices=LINKERS),
                 Option("grounding", str, _C.grounding, "check before storing a memory: the summariser's own "
                        "likelihood, the consistency classifier, or none (well-formedness only)", choices=GROUNDINGS),
                 Option("grounding_min_gain", float, _C.grounding_min_gain,
                        "nats/token the subject's own turns must add to a memory's likelihood"),
                 Option("preset", str, _C.preset, "embedded (SmolLM2-135M + MiniLM) or emma-paper "
                        "(FLAN-T5-Large + 2×bert-base-uncased, [CLS])", choices=tuple(PRESETS))),
        build=build, train_module="engine.systems.emma.train", order=10),
]
