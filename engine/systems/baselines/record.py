"""The baselines' registry records (docs/architecture.md, "Baselines"): all run on EMMA's dialogue module."""

from __future__ import annotations

from engine.systems.registry import Option, SystemRecord

from .published_config import REBOT_INTERVALS


def _build(cls_name: str, with_retriever: bool = False):
    def build(models, options: dict):
        from engine.systems.emma.model import dialogue_module, retriever

        from . import agents

        cls = getattr(agents, cls_name)
        args = (dialogue_module(models), retriever(models)) if with_retriever else (dialogue_module(models),)
        return cls(*args, **options)
    return build


def _build_llm(cls_name: str):
    def build(models, options: dict):
        from engine.systems.emma.model import dialogue_module, retriever

        from . import memory_llm

        return getattr(memory_llm, cls_name)(dialogue_module(models), retriever(models), **options)
    return build


def _build_published(which: str):
    def build(models, options: dict):
        from . import published

        return published.build(which, models, options)
    return build


_ON_LM = frozenset({"rewind"})
# the two baselines that form memories with EMMA's session end share its check before storing
_EMMA_MEMORY = (Option("grounding", str, "likelihood", "check before a memory is stored (EMMA's): the summariser's "
                       "likelihood, the consistency classifier, or none", choices=("likelihood", "consistency", "none")),)
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
    SystemRecord(name="all-memories", label="LLM + all memories",
                 help="the base LLM (no EMMA training) with every stored memory in the prompt (EMMA App. H)",
                 needs=frozenset({"generator", "encoder"}), keeps_memory=True, capabilities=_WITH_MEMORY,
                 options=_EMMA_MEMORY, build=_build_llm("AllMemoriesAgent"), order=60),
    SystemRecord(name="llm-retriever", label="LLM + EMMA retriever",
                 help="the base LLM (no EMMA training) given EMMA's retrieved memories (EMMA App. H)",
                 needs=frozenset({"generator", "encoder"}), keeps_memory=True, capabilities=_WITH_MEMORY,
                 options=_EMMA_MEMORY, build=_build_llm("LlmRetrieverAgent"), order=61),
    SystemRecord(name="rebot", label="ReBot",
                 help="ReBot (Jang et al. 2023): give its published BART generation module as the generator",
                 needs=frozenset({"generator"}), keeps_memory=True, capabilities=_WITH_MEMORY,
                 options=(Option("summarization", str, "", "its chronological summarisation module (directory or "
                                                          "id, e.g. jihyoung/rebot-summarization); empty: the generator"),
                          Option("interval", str, "A few days after", "time between sessions",
                                 choices=REBOT_INTERVALS),
                          Option("device", str, "auto", "device for the summarisation module: auto, cpu or cuda")),
                 build=_build_published("rebot"), order=70),
    SystemRecord(name="msc", label="MSC 2.7B",
                 help="MSC 2.7B (Xu et al. 2022), truncation 1024: give its Blenderbot checkpoint as the generator",
                 needs=frozenset({"generator"}), keeps_memory=True, capabilities=_ON_LM, options=(),
                 build=_build_published("msc"), order=71),
]
