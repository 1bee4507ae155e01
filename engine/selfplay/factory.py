"""Build the agent for each self-play seat from the system registry, loading the models once.

All seats share one loaded generator and encoder (the weights, :class:`engine.evaluation.loading.SystemBuilder`);
each seat gets its own agent object and therefore its own memory (EMMA §5.3: each instance has its own memory).
"""

from __future__ import annotations

import threading

from engine.data.model import Speaker


class SeatFactory:
    """``factory(role, speaker)`` → a fresh agent of the main or the partner system."""

    def __init__(self, builder, main_system: str, partner_system: str):
        self._builder = builder  # a SystemBuilder, or a function making one (loaded at the first seat)
        self.main_system, self.partner_system = main_system, partner_system
        self._lock = threading.Lock()  # episodes played concurrently load the models once

    @property
    def builder(self):
        with self._lock:
            if callable(self._builder) and not hasattr(self._builder, "models"):
                self._builder = self._builder()
            return self._builder

    @property
    def workers(self) -> int:
        """Episodes to play at once: the generator server's requests in flight, else 1 (in process)."""
        gen = getattr(getattr(self.builder, "models", None), "generator", None)
        backend = getattr(gen, "backend", None)
        return backend.max_in_flight if backend is not None else 1

    def __call__(self, role: str, speaker: Speaker):
        return self.builder(self.main_system if role == "main" else self.partner_system)

    @classmethod
    def from_args(cls, args, *, main_system: str, partner_system: str, log=print) -> "SeatFactory":
        from engine.evaluation.loading import SystemBuilder
        from engine.systems import registry

        systems = list(dict.fromkeys([main_system, partner_system]))
        for name in systems:  # unknown systems fail now; the models load when the first seat is built
            registry.get(name)
        from engine.backbones.server import server_options

        return cls(lambda: SystemBuilder.load(systems, {}, lm=args.lm, encoder=args.encoder, adapter=args.adapter,
                                              device=args.device, max_new_tokens=args.max_new_tokens,
                                              server=server_options(args), log=log),
                   main_system, partner_system)
