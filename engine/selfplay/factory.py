"""Build the agent for each self-play seat from the system registry, loading the models once.

All seats share one loaded generator and encoder (the weights, :class:`engine.evaluation.loading.SystemBuilder`);
each seat gets its own agent object and therefore its own memory (EMMA §5.3: each instance has its own memory).
"""

from __future__ import annotations

from engine.data.model import Speaker


class SeatFactory:
    """``factory(role, speaker)`` → a fresh agent of the main or the partner system."""

    def __init__(self, builder, main_system: str, partner_system: str):
        self.builder = builder
        self.main_system, self.partner_system = main_system, partner_system

    def __call__(self, role: str, speaker: Speaker):
        return self.builder(self.main_system if role == "main" else self.partner_system)

    @classmethod
    def from_args(cls, args, *, main_system: str, partner_system: str, log=print) -> "SeatFactory":
        from engine.evaluation.loading import SystemBuilder

        systems = list(dict.fromkeys([main_system, partner_system]))
        builder = SystemBuilder.load(systems, {}, lm=args.lm, encoder=args.encoder, adapter=args.adapter,
                                     device=args.device, max_new_tokens=args.max_new_tokens, log=log)
        return cls(builder, main_system, partner_system)
