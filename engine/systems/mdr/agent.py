"""MDR as a chat agent (paper 000 §3, §4.2): each reply is decoded from the query and the distilled response
feature R⁽ᴷ⁾ built from the persona and a partial history chosen by the teacher (Eq. 7).

* persona P: the main speaker's self-description (name, job), the ``persona`` option's sentences, and its
  self-memories from an ingested episode (e.g. a ConvAI2 persona);
* history H: every (partner utterance, own reply) pair of the episode so far — earlier sessions with other
  partners and the current session;
* each turn records what it was given in ``TurnRecord.given`` (kind ``"turn"``): the history entry H(index)
  that Eq. 7 selected and the last turn (Q(T−1), R(T−1)), so the chat page can show and link them.

MDR keeps no summarised memory: its memory is the dialogue history itself plus the trained weights; the
session end stores nothing new.
"""

from __future__ import annotations

import threading
from typing import Iterator

from engine.agent import Agent, Cancelled, TurnRecord
from engine.data.model import MemoryUpdate, Speaker, Turn
from engine.systems.generation import GenerationSettings, stream_from_inputs

STATE_FORMAT = "memlab-agent/1"


def split_persona(text: str) -> list[str]:
    """``"I like tea. | I have a dog."`` (or one sentence per line) → sentences."""
    parts = [p.strip() for chunk in (text or "").split("\n") for p in chunk.split("|")]
    return [p for p in parts if p]


class MdrAgent(Agent):
    name = "mdr"

    def __init__(self, model, lm, settings: GenerationSettings | None = None, persona: list[str] | None = None,
                 checkpoint: str = "", checkpoint_note: str = ""):
        super().__init__()
        self.model = model            # engine.systems.mdr.model.MdrModel
        self.lm = lm                  # a LoadedLM view of the MDR decoder, for streaming
        self.settings = settings or GenerationSettings(max_new_tokens=32)
        self.extra_persona = list(persona or [])
        self.episode_persona: list[str] = []
        self.sessions: list[dict] = []
        self.turns: list[Turn] = []
        self.checkpoint, self.checkpoint_note = checkpoint, checkpoint_note

    # ------------------------------------------------------------------ what MDR reads
    def persona(self) -> list[str]:
        out = []
        if self.main is not None:
            out.append(f"My name is {self.main.name}." + (f" I am {self._article(self.main.job)}." if self.main.job else ""))
        return out + self.episode_persona + self.extra_persona

    @staticmethod
    def _article(job: str) -> str:
        job = job.strip()
        if job.lower().startswith(("a ", "an ", "the ", "my ")) or not job:
            return job
        return ("an " if job[0].lower() in "aeiou" else "a ") + job

    def set_persona(self, sentences: list[str]) -> None:
        """Persona sentences from the episode (e.g. ConvAI2's ``your persona`` lines, MiSC self-memories)."""
        self.episode_persona = [s.strip() for s in sentences if s and s.strip()]

    def history_pairs(self, turns: list[Turn] | None = None) -> list[tuple[str, str, str, str]]:
        """(query, reply, query turn id, reply turn id) for every partner → main exchange so far."""
        out = []
        main = self.main.name if self.main else None
        seqs = [[Turn(t["id"], t["speaker"], t["text"]) for t in s["turns"]] for s in self.sessions]
        seqs.append(self.turns if turns is None else turns)
        for seq in seqs:
            prev = None
            for t in seq:
                if t.speaker == main and prev is not None and prev.speaker != main:
                    out.append((prev.text, t.text, prev.id, t.id))
                prev = t
        return out

    # ------------------------------------------------------------------ contract
    def start_session(self, main: Speaker, partner: Speaker, session_index: int) -> None:
        if self.turns:
            raise RuntimeError("end_session() the current session before starting another")
        if self.main is not None and main.name != self.main.name:
            raise ValueError(f"the main speaker is {self.main.name!r} for the whole chat, not {main.name!r}")
        self.main, self.partner, self.session_index = main, partner, session_index
        self.turns = []

    def _turn_id(self) -> str:
        return f"s{self.session_index}t{len(self.turns)}"

    def _condition(self, utterance: str):
        """R⁽ᴷ⁾ for ``utterance`` and what was given (Eq. 7 selection + last turn)."""
        pairs = self.history_pairs()
        feature, hp, index = self.model.response_feature(utterance, self.persona(), [(q, r) for q, r, _, _ in pairs])
        given = []
        if index is not None:
            q, r, _, rid = pairs[index]
            given.append({"kind": "turn", "id": rid, "text": f"{q} / {r}", "why": "most similar to the query (Eq. 7)"})
        if pairs:
            q, r, _, rid = pairs[-1]
            given.append({"kind": "turn", "id": rid, "text": f"{q} / {r}", "why": "last turn"})
        return feature, given

    def respond(self, utterance: str, cancel: threading.Event | None = None) -> Iterator[str]:
        if self.main is None or self.partner is None:
            raise RuntimeError("start_session() before respond()")
        utterance = utterance.strip()
        feature, given = self._condition(utterance)
        self.turns.append(Turn(self._turn_id(), self.partner.name, utterance))
        record = TurnRecord(user=utterance, reply="", memory_ids=[])
        record.given = given
        self.last_turn = record
        embeds, mask = self.model.decoder.prompt_embeds(feature, utterance)
        pieces: list[str] = []
        try:
            for piece in stream_from_inputs(self.lm, {"inputs_embeds": embeds, "attention_mask": mask},
                                            self.settings, cancel):
                pieces.append(piece)
                yield piece
        except Cancelled:
            record.cancelled = True
        record.reply = "".join(pieces).strip()
        if record.reply and not record.cancelled:
            self.turns.append(Turn(self._turn_id(), self.main.name, record.reply))

    def sample_replies(self, utterance: str, n: int = 5, cancel: threading.Event | None = None) -> list[str]:
        """``n`` sampled replies to ``utterance`` in the current context, not logged (S-Dist, paper §4.3)."""
        import torch

        feature, _ = self._condition(utterance.strip())
        embeds, mask = self.model.decoder.prompt_embeds(feature, utterance.strip())
        tok = self.lm.tokenizer
        kw = self.settings.generate_kwargs(tok) | {"do_sample": True, "num_return_sequences": n}
        kw.setdefault("temperature", self.settings.temperature)
        kw.setdefault("top_p", self.settings.top_p)
        with torch.inference_mode():
            out = self.lm.model.generate(inputs_embeds=embeds, attention_mask=mask, **kw)
        return [tok.decode(row, skip_special_tokens=True).strip() for row in out]

    def ingest_memories(self, memories: list[dict]) -> MemoryUpdate:
        """Given memories of the episode (``{"about", "text", "session"}``): those about the main speaker are its
        persona P (e.g. ConvAI2's persona lines); MDR has no place for memories about others."""
        if self.main is None:
            raise RuntimeError("set the main speaker (start_session or agent.main) before ingesting memories")
        mine = [m["text"] for m in memories if m.get("about") == self.main.name and m.get("text")]
        self.set_persona(self.episode_persona + mine)
        skipped = len(memories) - len(mine)
        notes = [f"MDR took {len(mine)} persona sentence(s)"]
        if skipped:
            notes.append(f"{skipped} memories about other speakers are not part of MDR's persona P")
        return MemoryUpdate(notes=notes)

    def restore(self, turns) -> None:
        """Make ``turns`` (Turn objects or ``{"speaker", "text"}`` dicts) the current session so far."""
        if self.main is None or self.partner is None:
            raise RuntimeError("start_session() before restore()")
        self.turns = []
        for t in turns:
            speaker, text = (t.speaker, t.text) if isinstance(t, Turn) else (t["speaker"], t["text"])
            self.turns.append(Turn(self._turn_id(), speaker, text))

    def rewind(self, n_turns: int) -> None:
        """Drop the last ``n_turns`` turns of the current session (edit-and-branch)."""
        if n_turns < 0:
            raise ValueError(f"n_turns must be >= 0, got {n_turns}")
        self.turns = self.turns[:max(0, len(self.turns) - n_turns)]

    def ingest_session(self, partner: Speaker, session_index: int, turns, progress=None) -> MemoryUpdate:
        """Log a session that already happened (no generation); MDR's memory is the history itself."""
        if self.main is None:
            raise RuntimeError("start_session() once (for the main speaker) before ingesting sessions")
        logged = []
        for k, t in enumerate(turns):
            speaker, text = (t.speaker, t.text) if isinstance(t, Turn) else (t["speaker"], t["text"])
            tid = t.id if isinstance(t, Turn) else t.get("id") or f"s{session_index}t{k}"
            logged.append({"id": tid, "speaker": speaker, "text": text})
        self.sessions.append({"index": session_index, "partner": {"name": partner.name, "job": partner.job},
                              "turns": logged})
        self.session_index = max(self.session_index, session_index)
        return MemoryUpdate(notes=[f"MDR logged {len(turns)} turns of session {session_index} as history"])

    def end_session(self, progress=None) -> MemoryUpdate:
        if self.main is None or self.partner is None:
            raise RuntimeError("no session to end")
        turns, self.turns = self.turns, []
        self.sessions.append({"index": self.session_index,
                              "partner": {"name": self.partner.name, "job": self.partner.job},
                              "turns": [{"id": t.id, "speaker": t.speaker, "text": t.text} for t in turns]})
        return MemoryUpdate(notes=[f"MDR keeps the dialogue history ({len(self.history_pairs())} exchanges) "
                                   "as its memory; nothing is summarised"])

    def state(self) -> dict:
        return {"format": STATE_FORMAT, "agent": self.name,
                "main": None if self.main is None else {"name": self.main.name, "job": self.main.job},
                "sessions": self.sessions, "persona": self.episode_persona}

    def load_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a {STATE_FORMAT} agent state (field 'format')")
        if state.get("agent") != self.name:
            raise ValueError(f"state is for agent {state.get('agent')!r}, not {self.name!r} (field 'agent')")
        main = state.get("main")
        self.main = Speaker(main["name"], main.get("job", "")) if main else None
        self.sessions = list(state.get("sessions", []))
        self.episode_persona = list(state.get("persona", []))
        self.session_index = max((s["index"] for s in self.sessions), default=-1)
        self.turns = []

    def describe(self) -> dict:
        cfg = self.model.config
        return {"agent": self.name, "lm": self.lm.name, "lm_kind": "causal", "lm_device": self.lm.plan.summary(),
                "lm_reasons": list(self.lm.plan.reasons) + [self.checkpoint_note],
                "checkpoint": self.checkpoint, "mdr": f"{cfg.ablation_name()}, K={cfg.hops}, sigma={cfg.sigma}",
                "persona": self.persona()}
