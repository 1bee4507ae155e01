"""EMMA's two modules built from the registry's loaded models (EMMA paper §4): the dialogue module on the
generator (§4.1) and the dual-encoder retrieval module (§4.2) on the encoder — or a published retriever
checkpoint handed over as the ``retriever`` component.  The baselines build theirs here too (they run on the
same modules)."""

from __future__ import annotations


def dialogue_module(models, link_batch_size: int = 32):
    from engine.systems.emma.dialogue import DialogueModule

    return DialogueModule(models.generator, models.settings, link_batch_size=link_batch_size)


def retriever(models):
    """The ``retriever`` component if one was loaded, else a :class:`Retriever` on the encoder (and the
    optional ``memory_encoder`` component for the memory side)."""
    from engine.systems.emma.retriever import Retriever

    ready = models.components.get("retriever")
    if ready is not None:
        return ready
    if models.encoder is None:
        raise ValueError("EMMA's retriever needs a sentence encoder (or a published retriever checkpoint)")
    if _is_embedded_encoder(models.encoder) and models.components.get("memory_encoder") is None:
        from engine.systems.emma.shipped import shipped_retriever

        found, why = shipped_retriever()
        if found is not None:
            from engine.systems.emma.retriever import load_retriever_checkpoint

            r = load_retriever_checkpoint(found, models.encoder.name, device=models.encoder.plan.device)
            r.note = why
            return r
        r = Retriever(models.encoder)
        r.note = why
        return r
    return Retriever(models.encoder, models.components.get("memory_encoder"))


def _is_embedded_encoder(encoder) -> bool:
    from pathlib import Path

    try:
        from engine.backbones.embedded import default_encoder_path

        return Path(str(encoder.name)).resolve() == default_encoder_path().resolve()
    except Exception:  # noqa: BLE001 — the embedded encoder package may be missing
        return False


def _is_embedded_generator(lm) -> bool:
    from pathlib import Path

    from engine.backbones.embedded import default_lm_path

    try:
        return Path(str(lm.name)).resolve() == default_lm_path().resolve()
    except OSError:
        return False


def link_head(models, linker: str):
    """The encoder link head when ``linker`` asks for it (or ``auto`` picks it for the embedded preset:
    :func:`engine.systems.emma.shipped.shipped_linker`); ``None``: the dialogue module links."""
    if linker == "dialogue":
        return None
    from engine.systems.emma.link_head import LinkHead
    from engine.systems.emma.shipped import LINK_HEAD_FILE, shipped_linker

    if linker == "encoder-head":
        if not LINK_HEAD_FILE.is_file():
            raise ValueError(f"linker=encoder-head: no link head at {LINK_HEAD_FILE}")
        return LinkHead.load(LINK_HEAD_FILE)
    if models.generator is None or not _is_embedded_generator(models.generator):
        return None
    choice, path, _why = shipped_linker()
    return LinkHead.load(path) if choice == "encoder-head" else None
