"""The baselines' registry records (docs/architecture.md, "Baselines"): all run on EMMA's dialogue module."""

from __future__ import annotations

from engine.systems.registry import Option, SystemRecord


def _build(cls_name: str, with_retriever: bool = False):
    def build(models, options: dict):
        from engine.systems.emma.model import dialogue_module, retriever

        from . import agents

        cls = getattr(agents, cls_name)
        args = (dialogue_module(models), retriever(models)) if with_retriever else (dialogue_module(models),)
        return cls(*args, **options)
    return build


_ON_LM = frozenset({"rewind"})
_WITH_MEMORY = frozenset({"memory_view", "rewind"})

RECORDS = [
    SystemRecord(name="summary", label="Summary baseline",
                 help="session summaries instead of egocentric memory (the EMMA paper's ablation)",
                 needs=frozenset({"generator"}), keeps_memory=True, capabilities=_WITH_MEMORY,
                 options=(Option("max_summaries", int, 5, "summaries of the most recent sessions in the prompt"),),
                 build=_build("SummaryAgent"), order=20),
    SystemRecord(name="rag", label="RAG baseline", help="raw past turns retrieved by similarity",
                 needs=frozenset({"generator", "encoder"}), keeps_memory=True, capabilities=_WITH_MEMORY,
                 options=(Option("k", int, 3, "past turns retrieved per reply"),),
                 build=_build("RagAgent", with_retriever=True), order=30),
    SystemRecord(name="full-history", label="Full history",
                 help="the whole history in the prompt, newest kept when it does not fit",
                 needs=frozenset({"generator"}), keeps_memory=True, capabilities=_ON_LM, options=(),
                 build=_build("FullHistoryAgent"), order=40),
    SystemRecord(name="no-memory", label="No memory", help="no memory between sessions",
                 needs=frozenset({"generator"}), keeps_memory=False, capabilities=_ON_LM, options=(),
                 build=_build("NoMemoryAgent"), order=50),
]
