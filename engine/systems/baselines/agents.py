"""The four baselines. Each is a :class:`SessionLogAgent` on the same :class:`DialogueModule` and the same
generation code as EMMA; they differ only in what the prompt gets and what is kept at session end."""

from __future__ import annotations

from engine.data.model import MemoryUpdate, Turn
from engine.systems.emma import formats
from engine.systems.emma.dialogue import DialogueModule
from engine.systems.emma.retriever import Retriever
from engine.systems.session_agent import SessionLogAgent, StoreBackedAgent, recent_context


class NoMemoryAgent(SessionLogAgent):
    """Only the current session's turns; nothing is kept between sessions."""

    name = "no-memory"


class FullHistoryAgent(SessionLogAgent):
    """Every earlier session's turns followed by the current session's, in the prompt ("text
    prompt" baseline); the oldest turns are dropped first when the context window is full."""

    name = "full-history"

    def prompt_history(self):
        past = [(t["speaker"], t["text"]) for _, t in self.past_turns()]
        return past + super().prompt_history()

    def store_session(self, turns, progress=None):
        return MemoryUpdate(notes=[f"kept {len(turns)} turns verbatim for later prompts"])


class SummaryAgent(StoreBackedAgent):
    """The paper's ablation (Appendix I): one summary per session instead of egocentric memory.

    The summaries of the ``max_summaries`` most recent sessions go into the prompt as memories."""

    name = "summary"

    def __init__(self, dialogue: DialogueModule, *, max_summaries: int = 5):
        super().__init__(dialogue)
        self.max_summaries = max_summaries

    def turn_memories(self, history):
        recent = self.store.memories()[-self.max_summaries:] if self.store else []
        return [(m.text, []) for m in recent], [m.id for m in recent]

    def store_session(self, turns: list[Turn], progress=None) -> MemoryUpdate:
        if progress:
            progress("summarising the session", 0, 1)
        summary = self.dialogue.summarize_session([(t.speaker, t.text) for t in turns])
        if not summary:
            return MemoryUpdate(notes=["the summariser returned nothing"])
        text = f"{summary} (with {self.partner.name}, {formats.ordinal(self.session_index)} session)"
        m = self.store.add("session", text, self.session_index, [t.id for t in turns])
        return MemoryUpdate(memories=[m])


class RagAgent(StoreBackedAgent):
    """Retrieval-augmented generation over raw past turns: every earlier turn is kept verbatim
    (as a memory about its speaker, vector cached once), and the ``k`` most similar to the recent
    context (cosine, same encoders as EMMA's retriever) go into the prompt."""

    name = "rag"

    def __init__(self, dialogue: DialogueModule, retriever: Retriever, *, k: int = 3):
        super().__init__(dialogue)
        self.retriever = retriever
        self.k = k

    def turn_memories(self, history):
        if not self.store or len(self.store) == 0:
            return [], []
        self.retriever.refresh(self.store)
        context = recent_context(history)
        hits = self.store.top_k(self.retriever.embed_context(context), self.k)
        ids = [mid for mid, _ in hits]
        return [(self.store.get(mid).text, []) for mid in ids], ids

    def given_items(self, ids):
        """Past turns: each stored memory holds one turn (``id``: the memory, ``turn_id``: the turn it keeps)."""
        out = []
        for mid in ids:
            m = self.store.get(mid)
            out.append({"kind": "turn", "id": mid, "turn_id": (m.source_turns or [mid])[0], "text": m.text,
                        "about": m.about, "session": m.session})
        return out

    def store_session(self, turns: list[Turn], progress=None) -> MemoryUpdate:
        new = [self.store.add(t.speaker, f"{t.speaker}: {t.text} ({formats.ordinal(self.session_index)} session)",
                              self.session_index, [t.id]) for t in turns]
        self.retriever.refresh(self.store)  # vectors once, in one batch
        return MemoryUpdate(memories=new)
