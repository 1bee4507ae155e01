"""``make_agent(name, lm, encoder, **opts)``: build any agent on EMMA's dialogue module by name."""

from __future__ import annotations

from engine.agent import Agent
from engine.backbones.types import LoadedEncoder, LoadedLM

AGENT_NAMES = ("emma", "no-memory", "full-history", "summary", "rag")
NEEDS_ENCODER = ("emma", "rag")


def make_agent(name: str, lm: LoadedLM, encoder: LoadedEncoder | None = None, **opts) -> Agent:
    """Options: ``retriever`` (a ready Retriever, e.g. from a published checkpoint), ``settings`` (GenerationSettings), ``memory_encoder`` (a second LoadedEncoder for
    EMMA's memory side), ``link_threshold``, ``link_candidates`` (EMMA), ``k`` (RAG),
    ``max_summaries`` (summary), ``link_batch_size``."""
    from engine.systems.emma.agent import EmmaAgent
    from engine.systems.emma.dialogue import DialogueModule
    from engine.systems.emma.retriever import Retriever
    from engine.systems import baselines as b

    if name not in AGENT_NAMES:
        raise ValueError(f"unknown agent {name!r}; choose one of {', '.join(AGENT_NAMES)}")
    retriever = opts.pop("retriever", None)
    memory_encoder = opts.pop("memory_encoder", None)
    if name in NEEDS_ENCODER and encoder is None and retriever is None:
        raise ValueError(f"agent {name!r} needs a sentence encoder (or a retriever) for retrieval")
    dialogue = DialogueModule(lm, opts.pop("settings", None), link_batch_size=opts.pop("link_batch_size", 32))
    if name in NEEDS_ENCODER and retriever is None:
        retriever = Retriever(encoder, memory_encoder)
    if name == "emma":
        return EmmaAgent(dialogue, retriever, **opts)
    if name == "rag":
        return b.RagAgent(dialogue, retriever, **opts)
    if name == "summary":
        return b.SummaryAgent(dialogue, **opts)
    if name == "full-history":
        return b.FullHistoryAgent(dialogue, **opts)
    return b.NoMemoryAgent(dialogue, **opts)
