"""MDR as a chat agent (paper 000 §3, §4.2) on the generic session-log agent: each reply is decoded from the
query and the distilled response feature R⁽ᴷ⁾, built from the persona and a partial history chosen by the
teacher (Eq. 7).

* persona P: the given memories about itself (``ingest_memories``: e.g. a ConvAI2 persona, MiSC self-memories)
  and the ``persona`` option's sentences — as in training, where P is the persona sentences —, or, when none is
  given (a live chat), the main speaker's name and job as one sentence;
* history H: every (partner utterance, own reply) pair of the episode so far — the earlier sessions, with other
  partners, and the current one;
* ``TurnRecord.given`` (kind ``"turn"``): the entry H(index) that Eq. 7 selected and the last turn
  (Q(T−1), R(T−1)) — H_P, what the student encoder read — with the ids of their reply turns.

MDR's "prompt" is not text: :class:`MdrResponder` turns (query, persona, history) into the soft-prefix inputs
of the decoder.  MDR keeps no summarised memory; the session end stores nothing new.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator

from engine.data.model import MemoryUpdate, Speaker
from engine.systems import generation as gen
from engine.systems.generation import GenerationSettings, stream_from_inputs
from engine.systems.session_agent import SessionLogAgent


def split_persona(text: str) -> list[str]:
    """``"I like tea. | I have a dog."`` (or one sentence per line) → sentences."""
    parts = [p.strip() for chunk in (text or "").split("\n") for p in chunk.split("|")]
    return [p for p in parts if p]


def exchanges(turns: list[tuple[str, str, str]], main: str) -> list[tuple[str, str, str]]:
    """(query, reply, reply turn id) for every partner turn answered by ``main``, from (speaker, text, id) turns."""
    out, prev = [], None
    for speaker, text, tid in turns:
        if speaker == main and prev is not None and prev[0] != main:
            out.append((prev[1], text, tid))
        prev = (speaker, text, tid)
    return out


@dataclass
class MdrPrompt:
    """What the decoder is given for one reply: the query Q and R⁽ᴷ⁾ (Eq. 14)."""

    query: str
    feature: object  # torch.Tensor (d,)


class MdrResponder:
    """The :class:`engine.systems.session_agent.Responder` of MDR: Eq. 7–12 and Fig. 3 to get R⁽ᴷ⁾, then the
    decoder with the feature as soft prefix, streamed (``generation.stream_from_inputs``) or sampled."""

    def __init__(self, model, lm, settings: GenerationSettings | None = None, note: str = ""):
        self.model = model     # engine.systems.mdr.model.MdrModel
        self.lm = lm           # a LoadedLM view of MDR's private decoder
        self.settings = settings or GenerationSettings(max_new_tokens=32)
        self.note = note

    def condition(self, query: str, persona: list[str], history: list[tuple[str, str]]):
        return self.model.response_feature(query, persona, history)

    def reply_prompt(self, main, partner, memories, session_index, history, bot_name=None) -> MdrPrompt:
        """``memories``: the persona sentences; ``history``: (speaker, text) turns of the episode, the last being
        the query."""
        name = bot_name or main.name
        query = history[-1][1]
        pairs = [(q, r) for q, r, _ in exchanges([(s, t, "") for s, t in history[:-1]], name)]
        feature, _, _ = self.condition(query, [m for m, _ in memories], pairs)
        return MdrPrompt(query, feature)

    def _inputs(self, prompt: MdrPrompt) -> dict:
        embeds, mask = self.model.decoder.prompt_embeds(prompt.feature, prompt.query)
        return {"inputs_embeds": embeds, "attention_mask": mask}

    def stream_reply(self, prompt: MdrPrompt, cancel: threading.Event | None = None) -> Iterator[str]:
        yield from stream_from_inputs(self.lm, self._inputs(prompt), self.settings, cancel)

    def sample_replies(self, prompt: MdrPrompt, n: int, cancel: threading.Event | None = None) -> list[str]:
        """``n`` sampled replies (S-Dist, paper §4.3: five per query), one ``generate`` call."""
        import torch

        tok = self.lm.tokenizer
        kw = self.settings.generate_kwargs(tok) | {"do_sample": True, "num_return_sequences": n,
                                                   "temperature": self.settings.temperature or 0.7,
                                                   "top_p": self.settings.top_p}
        with torch.inference_mode():
            out = self.lm.model.generate(**self._inputs(prompt), **kw)
        return [tok.decode(row, skip_special_tokens=True).strip() for row in out]

    def describe(self) -> dict:
        cfg = self.model.config
        return {**gen.describe_lm(self.lm), "lm_kind": "causal", "checkpoint": self.lm.adapter,
                "mdr": f"{cfg.ablation_name()}, K={cfg.hops}, sigma={cfg.sigma}"}


class MdrAgent(SessionLogAgent):
    name = "mdr"

    def __init__(self, responder: MdrResponder, persona: list[str] | None = None):
        super().__init__(responder)
        self.extra_persona = list(persona or [])
        self.episode_persona: list[str] = []

    # ------------------------------------------------------------------ what MDR reads
    def persona(self) -> list[str]:
        """P: the given persona sentences (episode + ``persona`` option); with none, the main speaker's name and
        job as one sentence (what a live chat knows about its speaker)."""
        given = self.episode_persona + self.extra_persona
        if given or self.main is None:
            return given
        return [f"My name is {self.main.name}." + (f" I am {_article(self.main.job)}." if self.main.job else "")]

    def episode_turns(self) -> list[tuple[str, str, str]]:
        """(speaker, text, id) of every turn so far: earlier sessions, then the current one."""
        out = [(t["speaker"], t["text"], t["id"]) for s in self.sessions for t in s["turns"]]
        return out + [(t.speaker, t.text, t.id) for t in self.turns]

    def history_pairs(self) -> list[tuple[str, str, str]]:
        return exchanges(self.episode_turns(), self.main.name if self.main else "")

    # ------------------------------------------------------------------ session-log hooks
    def prompt_history(self) -> list[tuple[str, str]]:
        return [(s, t) for s, t, _ in self.episode_turns()]

    def turn_memories(self, history):
        """The persona as the "memories" of the prompt; the ids of H_P's turns (Eq. 7 selection + last turn)."""
        turns = self.episode_turns()
        pairs = exchanges(turns[:-1], self.main.name)
        _, _, index = self.responder.condition(turns[-1][1], self.persona(), [(q, r) for q, r, _ in pairs])
        self._given = []
        if index is not None:
            q, r, rid = pairs[index]
            self._given.append({"kind": "turn", "id": rid, "text": f"{q} / {r}", "why": "most similar to the query (Eq. 7)"})
        if pairs:
            q, r, rid = pairs[-1]
            self._given.append({"kind": "turn", "id": rid, "text": f"{q} / {r}", "why": "last turn"})
        return [(p, []) for p in self.persona()], [g["id"] for g in self._given]

    def given_items(self, ids):
        return list(getattr(self, "_given", []))

    def store_session(self, turns, progress=None) -> MemoryUpdate:
        n = len(self.history_pairs()) + len(exchanges([(t.speaker, t.text, t.id) for t in turns], self.main.name))
        return MemoryUpdate(notes=[f"MDR keeps the dialogue history ({n} exchanges so far) as its memory; "
                                   "nothing is summarised"])

    def ingest_memories(self, memories: list[dict]) -> MemoryUpdate:
        """Given memories (``{"about", "text", "session"}``): those about the main speaker are its persona P."""
        if self.main is None:
            raise RuntimeError("set the main speaker (start_session or agent.main) before ingesting memories")
        mine = [m["text"] for m in memories if m.get("about") == self.main.name and m.get("text")]
        self.episode_persona += [t.strip() for t in mine if t.strip()]
        notes = [f"MDR took {len(mine)} persona sentence(s)"]
        if len(memories) > len(mine):
            notes.append(f"{len(memories) - len(mine)} memories about other speakers are not part of MDR's persona P")
        return MemoryUpdate(notes=notes)

    def extra_state(self) -> dict:
        return {"persona": self.episode_persona}

    def load_extra_state(self, state: dict) -> None:
        self.episode_persona = list(state.get("persona", []))

    def describe(self) -> dict:
        return {**super().describe(), "persona": self.persona()}


def _article(job: str) -> str:
    job = job.strip()
    if not job or job.lower().startswith(("a ", "an ", "the ", "my ")):
        return job
    return ("an " if job[0].lower() in "aeiou" else "a ") + job
