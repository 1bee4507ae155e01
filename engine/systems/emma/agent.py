"""EMMA (paper §4): dialogue module + retrieval module over an egocentric memory.

Per turn (§4.2): encode the recent context once, take the top-1 memory by cosine similarity over
the cached memory vectors plus the memories linked to it, and generate with them in the prompt.
At session end (§4.1): summarise the session about the main speaker and about the partner
(``[SEP]``/``[NONE]``), store each memory with its provenance suffix, then link the new memories
within the session and to earlier ones by scoring ``positive``/``negative`` in batches.
"""

from __future__ import annotations

import time

import numpy as np

from engine.data.model import Link, MemoryUpdate, Turn
from engine.systems.emma import formats
from engine.systems.emma.dialogue import DialogueModule
from engine.systems.emma.retriever import Retriever
from engine.systems.session_agent import CONTEXT_TURNS, StoreBackedAgent, recent_context


class EmmaAgent(StoreBackedAgent):
    """EMMA. ``link_candidates``: per new memory, how many earlier memories (most similar first by
    the memory encoder) the linker scores; ``None`` scores every earlier memory."""

    name = "emma"

    def __init__(self, dialogue: DialogueModule, retriever: Retriever, *,
                 link_threshold: float = 0.5, link_candidates: int | None = 32):
        super().__init__(dialogue)
        self.retriever = retriever
        self.link_threshold = link_threshold
        self.link_candidates = link_candidates

    # ------------------------------------------------------------------ per turn (§4.2)

    def turn_memories(self, history):
        if self.store is None or len(self.store) == 0:
            return [], []
        context = recent_context(history, CONTEXT_TURNS)
        hit = self.retriever.retrieve(self.store, context)
        if hit is None:
            return [], []
        text = lambda mid: self.store.get(mid).text  # noqa: E731
        return [(text(hit.top_id), [text(i) for i in hit.linked_ids])], hit.ids

    # ------------------------------------------------------------------ session end (§4.1)
    def store_session(self, turns: list[Turn], progress=None) -> MemoryUpdate:
        store, idx = self.store, self.session_index
        pairs_text = [(t.speaker, t.text) for t in turns]
        source = [t.id for t in turns]
        notes: list[str] = []
        new = []
        t0 = time.perf_counter()
        for k, who in enumerate((self.main.name, self.partner.name)):
            if progress:
                progress(f"summarising memories about {who}", k, 3)
            for sentence in self.dialogue.summarize(who, pairs_text):
                new.append(store.add(who, formats.with_provenance(sentence, who, idx), idx, source))
        notes.append(f"summarised {len(new)} memories in {time.perf_counter() - t0:.1f}s")
        links = self.link_new(new, progress)
        notes.append(f"linked {len(links)} pairs")
        if progress:
            progress("done", 3, 3)
        return MemoryUpdate(memories=list(new), links=links, notes=notes)

    def link_candidates_for(self, new_ids: list[str]) -> list[tuple[str, str]]:
        """(newer, older) pairs to score: within the new memories (later → earlier) and from each
        new memory to earlier memories (all, or the ``link_candidates`` most similar)."""
        store = self.store
        pairs = [(new_ids[j], new_ids[i]) for j in range(len(new_ids)) for i in range(j)]
        new_set = set(new_ids)
        earlier = [m.id for m in store.memories() if m.id not in new_set]
        if not earlier:
            return pairs
        if self.link_candidates is None or len(earlier) <= self.link_candidates:
            for n in new_ids:
                pairs.extend((n, o) for o in earlier)
            return pairs
        self.retriever.refresh(store)
        for n in new_ids:
            hits = store.top_k(store.vector(n), self.link_candidates, exclude=new_set)
            pairs.extend((n, o) for o, _ in hits)
        return pairs

    def link_new(self, new, progress=None) -> list[Link]:
        if not new:
            return []
        store = self.store
        self.retriever.refresh(store)  # one batch for the new memories' vectors
        pairs = self.link_candidates_for([m.id for m in new])
        if progress:
            progress(f"linking {len(pairs)} memory pairs", 2, 3)
        probs = self.dialogue.link_probabilities(
            [(store.get(a).text, store.get(b).text) for a, b in pairs])
        links = []
        for (a, b), p in zip(pairs, np.asarray(probs)):
            if p > self.link_threshold:
                links.append(store.link(a, b, "related"))
        return links

    # ------------------------------------------------------------------ state
    def describe(self) -> dict:
        d = super().describe()
        d.update(context_encoder=self.retriever.context_encoder.name,
                 memory_encoder=self.retriever.memory_encoder.name,
                 encoder_device=self.retriever.context_encoder.plan.summary())
        return d
