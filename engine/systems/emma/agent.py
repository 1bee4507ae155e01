"""EMMA (paper §4): dialogue module + retrieval module over an egocentric memory.

Per turn (§4.2): encode the recent context once, take the top-1 memory by cosine similarity over
the cached memory vectors plus the memories linked to it, and generate with them in the prompt.
At session end (§4.1): summarise the session about the main speaker and about the partner from the
final generation sequence (App. E.1: names, jobs, memories, ``[NOW]``; ``[SEP]``/``[NONE]``), check every
candidate (well-formed, grounded in its subject's own turns: :mod:`engine.systems.emma.grounding`) and store
the ones that pass with their provenance suffix — the others are returned as ``rejected`` with the reason —
then link (:mod:`engine.systems.emma.linking`: the paper's session-end schedule or the released per-turn one)
by scoring ``positive``/``negative`` in batches.
"""

from __future__ import annotations

import time

import numpy as np

from engine.data.model import Link, MemoryUpdate, Turn
from engine.systems.emma import formats, linking
from engine.systems.emma.dialogue import DialogueModule
from engine.systems.emma.grounding import ConsistencyGrounding, LikelihoodGrounding, check_candidates
from engine.systems.emma.retriever import Retriever
from engine.systems.session_agent import CONTEXT_TURNS, StoreBackedAgent, recent_context


class EmmaAgent(StoreBackedAgent):
    """EMMA. Linking (:mod:`engine.systems.emma.linking`): ``link_schedule`` ``"session-end"`` (the paper:
    new × new, then new × earlier) or ``"per-turn"`` (the released loop: the retrieved memory against the
    others, top-1); ``link_candidates`` earlier memories scored per memory, most similar first (0 or ``None``
    = all); ``link_threshold`` p(positive) to link (``None``: the adapter's calibrated threshold, else 0.5);
    ``link_fan_out`` linked memories given with the retrieved one.  ``grounding``: the check every memory
    candidate passes before it is stored (:mod:`engine.systems.emma.grounding`): ``"likelihood"`` (the
    summariser's own likelihood), ``"consistency"`` (the metrics' classifier) or ``"none"`` (well-formedness
    only)."""

    name = "emma"

    def __init__(self, dialogue: DialogueModule, retriever: Retriever, *,
                 link_threshold: float | None = None, link_candidates: int | None = 8,
                 link_schedule: str = "session-end", link_fan_out: int = 4, grounding: str = "likelihood",
                 grounding_min_gain: float = 0.3, preset: str | None = None, link_head=None):
        super().__init__(dialogue)
        self.retriever = retriever
        self.links_settings = linking.LinkSettings(link_schedule, int(link_candidates or 0), link_threshold,
                                                   link_fan_out)
        self.link_head = link_head  # engine.systems.emma.link_head.LinkHead, or None: the dialogue module links
        self.linker = "encoder-head" if link_head is not None else "dialogue"
        if link_head is not None:
            test = link_head.meta.get("held_out_test") or {}
            calibrated = link_head.threshold
            self.link_threshold_source = (f"encoder link head's calibrated threshold {calibrated:.3f} (held-out "
                                          f"precision {test.get('precision') or 0:.2f} at recall {test.get('recall') or 0:.2f})")
        else:
            calibrated, self.link_threshold_source = linking.calibrated_threshold(getattr(dialogue.lm, "adapter", None))
        if link_threshold is not None:
            self.link_threshold, self.link_threshold_source = link_threshold, "set by the user"
        else:
            self.link_threshold = calibrated if calibrated is not None else linking.DEFAULT_THRESHOLD
        self.link_candidates = self.links_settings.candidates or None
        self.retriever.max_linked = link_fan_out
        self.grounding_name = grounding
        if grounding == "likelihood":
            self.grounding = LikelihoodGrounding(dialogue.lm, min_gain=grounding_min_gain,
                                                 speakers=getattr(dialogue, "summary_speakers", True))
        elif grounding == "consistency":
            self.grounding = ConsistencyGrounding()
        elif grounding == "none":
            self.grounding = None
        else:
            raise ValueError(f"grounding must be likelihood, consistency or none, got {grounding!r}")
        self.preset = preset
        self.turn_links: list[Link] = []  # per-turn schedule: links made during the current session

    # ------------------------------------------------------------------ per turn (§4.2)

    def turn_memories(self, history):
        if self.store is None or len(self.store) == 0:
            return [], []
        context = recent_context(history, CONTEXT_TURNS)
        hit = self.retriever.retrieve(self.store, context)
        if hit is None:
            return [], []
        if self.links_settings.schedule == "per-turn":
            self._link_per_turn(hit.top_id)
            hit.linked_ids = self.store.linked(hit.top_id)[: self.retriever.max_linked]
        text = lambda mid: self.store.get(mid).text  # noqa: E731
        return [(text(hit.top_id), [text(i) for i in hit.linked_ids])], hit.ids

    def _link_per_turn(self, top_id: str) -> None:
        """The released loop's schedule: the retrieved memory against the others, the best one linked."""
        store = self.store
        others = [o for o in linking.per_turn_candidates(store, top_id, self.links_settings.candidates)
                  if o not in store.linked(top_id)]
        if not others:
            return
        order = {m.id: i for i, m in enumerate(store.memories())}
        probs = self.link_probabilities([(store.get(top_id).text, store.get(o).text) for o in others])
        best = int(probs.argmax())
        if probs[best] > self.link_threshold:
            a, b = (top_id, others[best]) if order[top_id] > order[others[best]] else (others[best], top_id)
            self.turn_links.append(store.link(a, b, "related"))

    # ------------------------------------------------------------------ session end (§4.1)
    def _given_at_last_turn(self, turns: list[Turn]) -> list[tuple[str, list[str]]]:
        """The memories of the session's final generation sequence (App. E.1): those given at the last bot turn."""
        store = self.store
        for t in reversed(turns):
            if t.speaker == self.main.name and t.memory_ids:
                ids = [i for i in t.memory_ids if i in store]
                return [(store.get(ids[0]).text, [store.get(i).text for i in ids[1:]])] if ids else []
        return []

    def store_session(self, turns: list[Turn], progress=None) -> MemoryUpdate:
        store, idx = self.store, self.session_index
        pairs_text = [(t.speaker, t.text) for t in turns]
        source = [t.id for t in turns]
        given = self._given_at_last_turn(turns)
        notes: list[str] = []
        steps = 5
        t0 = time.perf_counter()
        candidates: list[tuple[str, str]] = []
        for k, who in enumerate((self.main.name, self.partner.name)):
            if progress:
                progress(f"summarising memories about {who}", k, steps)
            for sentence in self.dialogue.summarize(who, pairs_text, main=self.main, partner=self.partner,
                                                    memories=given, session_index=idx):
                candidates.append((who, sentence))
        if progress:
            progress(f"checking {len(candidates)} candidate memories (grounding, well-formedness)", 2, steps)
        existing = [(m.about, formats.strip_provenance(m.text)) for m in store.memories()]
        verdicts = check_candidates(candidates, pairs_text, self.main, self.partner, idx, grounding=self.grounding,
                                    existing=existing, embed=self.retriever.embed_memories)
        new = [store.add(v.about, formats.with_provenance(v.text, v.about, idx), idx, source) for v in verdicts if v.ok]
        rejected = [v.to_dict() for v in verdicts if not v.ok]
        notes.append(f"summarised {len(candidates)} candidates in {time.perf_counter() - t0:.1f}s: stored "
                     f"{len(new)}, rejected {len(rejected)} ({self.grounding_name} grounding check)")
        if self.links_settings.schedule == "session-end":
            links = self.link_new(new, progress, steps)
            notes.append(f"linked {len(links)} pairs (threshold {self.link_threshold:.3f}: {self.link_threshold_source})")
            bounds = (getattr(self.dialogue, "last_link_stats", None) or {}).get("upper_bounds", 0)
            if new and bounds:  # a generator server without echo: some label log-probabilities are only bounded
                notes.append(f"{bounds} link label scores are upper bounds (the generator server returned the label "
                             "outside its top alternatives and refuses echo): those links may be missed")
        else:
            links, self.turn_links = list(self.turn_links), []
            notes.append(f"per-turn linking: {len(links)} links made during the session")
        if progress:
            progress("done", steps, steps)
        return MemoryUpdate(memories=list(new), links=links, notes=notes, rejected=rejected)

    def link_probabilities(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """p(related) per (newer, older) text pair: the dialogue module's ``positive`` score (§4.1) or the
        encoder link head's, whichever this agent links with."""
        if self.link_head is not None:
            return np.asarray(self.link_head.score_texts(self.retriever.embed_memories, pairs))
        return np.asarray(self.dialogue.link_probabilities(pairs))

    def link_candidates_for(self, new_ids: list[str]) -> list[tuple[str, str]]:
        """(newer, older) pairs to score at session end (the paper's schedule, :mod:`linking`)."""
        return linking.session_end_pairs(self.store, new_ids, self.links_settings.candidates, self.retriever.refresh)

    def link_new(self, new, progress=None, steps: int = 3) -> list[Link]:
        if not new:
            return []
        store = self.store
        self.retriever.refresh(store)  # one batch for the new memories' vectors
        pairs = self.link_candidates_for([m.id for m in new])
        if progress:
            backend = getattr(getattr(self.dialogue, "lm", None), "backend", None)
            where = (f", up to {min(backend.max_in_flight, len(pairs))} requests in flight on the generator server"
                     if backend is not None and pairs else "")
            progress(f"linking: scoring {len(pairs)} memory pairs{where}", steps - 2, steps)
        probs = self.link_probabilities([(store.get(a).text, store.get(b).text) for a, b in pairs])
        links = []
        for (a, b), p in zip(pairs, np.asarray(probs)):
            if p > self.link_threshold:
                links.append(store.link(a, b, "related"))
        return links

    # ------------------------------------------------------------------ state
    def describe(self) -> dict:
        d = super().describe()
        from engine.systems.emma.presets import system_label

        d.update(label=system_label(self.dialogue.lm.name, self.preset), preset=self.preset,
                 adapter=getattr(self.dialogue.lm, "adapter", None),
                 linker=self.linker, link_schedule=self.links_settings.schedule, link_candidates=self.links_settings.candidates,
                 link_fan_out=self.retriever.max_linked, link_threshold=self.link_threshold,
                 link_threshold_source=self.link_threshold_source, grounding=self.grounding_name,
                 retriever_note=getattr(self.retriever, "note", ""),
                 summary_prompt=getattr(self.dialogue, "summary_prompt_note", ""),
                 context_encoder=self.retriever.context_encoder.name,
                 memory_encoder=self.retriever.memory_encoder.name,
                 encoder_device=self.retriever.context_encoder.plan.summary())
        return d
