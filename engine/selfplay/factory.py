"""Build the agent for each self-play seat from the system registry, loading the models once.

All seats share one loaded generator and encoder (the weights); each seat gets its own agent
object and therefore its own memory store (EMMA §5.3: each instance has its own memory).
"""

from __future__ import annotations

from engine.data.model import Speaker


class SeatFactory:
    """``factory(role, speaker)`` → a fresh agent of the main or the partner system."""

    def __init__(self, build, main_system: str, partner_system: str):
        self._build = build
        self.main_system, self.partner_system = main_system, partner_system

    def __call__(self, role: str, speaker: Speaker):
        return self._build(self.main_system if role == "main" else self.partner_system)

    @classmethod
    def from_args(cls, args, *, main_system: str, partner_system: str, log=print) -> "SeatFactory":
        from engine.backbones.embedded import default_encoder_path
        from engine.backbones.loading import load_encoder, load_lm
        from engine.chat.cli import _default_lm, resolve_adapter
        from engine.systems.generation import GenerationSettings
        from engine.systems.registry import AGENT_NAMES, NEEDS_ENCODER, make_agent

        for name in (main_system, partner_system):
            if name not in AGENT_NAMES:
                raise ValueError(f"unknown system {name!r}; choose one of {', '.join(AGENT_NAMES)}")
        lm = load_lm(args.lm or _default_lm(), adapter=resolve_adapter(args.adapter, args.lm), device=args.device)
        log(f"generator: {lm.name} ({lm.kind}) on {lm.plan.summary()}")
        for r in lm.plan.reasons:
            log(f"  - {r}")
        encoder = None
        if {main_system, partner_system} & set(NEEDS_ENCODER):
            encoder = load_encoder(args.encoder or str(default_encoder_path()), device=args.device)
            log(f"encoder: {encoder.name} on {encoder.plan.summary()}")
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens)

        def build(name):
            return make_agent(name, lm, encoder, settings=settings)

        return cls(build, main_system, partner_system)
