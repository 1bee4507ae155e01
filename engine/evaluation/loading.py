"""Load the models several registry systems need once, and build a fresh agent of any of them.

Used by ``memlab eval compare`` and ``memlab selfplay``: the generator and the encoder are loaded once (the
embedded default and the shipped EMMA adapter unless told otherwise, as ``memlab chat`` does) and shared by
every agent; each agent keeps its own memory.
"""

from __future__ import annotations

from engine.systems import registry


class SystemBuilder:
    """``builder(name)`` → a fresh agent of system ``name`` with its validated options."""

    def __init__(self, models, options: dict[str, dict]):
        self.models = models
        self.options = options

    def __call__(self, name: str):
        return registry.build_agent(name, self.models, **self.options.get(name, {}))

    def describe(self) -> dict:
        d = {}
        lm, enc = self.models.generator, self.models.encoder
        if lm is not None:
            d["generator"] = {"name": lm.name, "kind": lm.kind, "device": lm.plan.summary(),
                              "reasons": list(lm.plan.reasons)}
        if enc is not None:
            d["encoder"] = {"name": enc.name, "device": enc.plan.summary()}
        settings = self.models.settings
        if settings is not None:
            d["generation"] = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample,
                               "temperature": settings.temperature, "top_p": settings.top_p}
        d["options"] = {k: dict(v) for k, v in self.options.items()}
        return d

    @classmethod
    def load(cls, systems: list[str], options: dict[str, dict] | None = None, *, lm: str | None = None,
             encoder: str | None = None, adapter: str | None = "auto", device: str | None = None,
             max_new_tokens: int = 40, budget_s: float | None = None, server: dict | None = None,
             log=print) -> "SystemBuilder":
        """Validate every system's options first (a typo fails before any model loads), then load the
        roles the systems need. ``budget_s`` goes to each system whose record has a ``budget_s`` option;
        ``server`` (:func:`engine.backbones.server.server_options`) puts the generator on a generator server."""
        from engine.backbones.embedded import default_encoder_path
        from engine.backbones.loading import load_encoder, load_lm
        from engine.chat.cli import _default_lm, resolve_adapter
        from engine.systems.generation import GenerationSettings

        options = {name: dict((options or {}).get(name, {})) for name in systems}
        needs: set[str] = set()
        for name in systems:
            rec = registry.get(name)
            if budget_s is not None and any(o.name == "budget_s" for o in rec.options):
                options[name].setdefault("budget_s", budget_s)
            options[name] = rec.validate(options[name])
            needs |= set(rec.needs)
        models = registry.Models(settings=GenerationSettings(max_new_tokens=max_new_tokens))
        if "generator" in needs:
            if server:
                from engine.backbones.loading import connect_lm

                models.generator = connect_lm(tokenizer_source=lm or _default_lm(), **server)
            else:
                models.generator = load_lm(lm or _default_lm(), adapter=resolve_adapter(adapter, lm), device=device)
            g = models.generator
            log(f"generator: {g.name} ({g.kind}) on {g.where}")
            for r in g.plan.reasons:
                log(f"  - {r}")
        if "encoder" in needs:
            models.encoder = load_encoder(encoder or str(default_encoder_path()), device=device)
            log(f"encoder: {models.encoder.name} on {models.encoder.plan.summary()}")
        return cls(models, options)
