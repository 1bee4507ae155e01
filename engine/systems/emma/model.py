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
    return Retriever(models.encoder, models.components.get("memory_encoder"))
