"""Shared skeleton of the agents built on EMMA's dialogue module (EMMA and the four baselines).

It keeps the session log (turns with ids and the memories each bot turn was given), runs a turn as
"choose memories → build prompt → stream the reply" and saves/restores the log. A subclass only says
which memories a turn gets (:meth:`turn_memories`), which turns the prompt shows
(:meth:`prompt_history`) and what it stores at session end (:meth:`store_session`).
"""

from __future__ import annotations

import threading
from typing import Iterator

from engine.agent import Agent, Cancelled, TurnRecord
from engine.data.model import MemoryUpdate, Speaker, Turn
from engine.memory import MemoryStore
from engine.systems.emma.dialogue import DialogueModule

AGENT_STATE_FORMAT = "memlab-agent/1"


class ChatAgent(Agent):
    """An :class:`Agent` on a :class:`DialogueModule`; see the module docstring."""

    name = "chat-agent"

    def __init__(self, dialogue: DialogueModule):
        super().__init__()
        self.dialogue = dialogue
        self.sessions: list[dict] = []  # {"index", "partner": {name, job}, "turns": [Turn dicts]}
        self.turns: list[Turn] = []  # the current session

    # ------------------------------------------------------------------ hooks
    def turn_memories(self, history: list[tuple[str, str]]) -> tuple[list[tuple[str, list[str]]], list[str]]:
        """(memories for the prompt as (text, [linked texts]), their ids). Default: none."""
        return [], []

    def prompt_history(self) -> list[tuple[str, str]]:
        """The (speaker, text) turns shown in the prompt. Default: the current session."""
        return [(t.speaker, t.text) for t in self.turns]

    def store_session(self, turns: list[Turn], progress=None) -> MemoryUpdate:
        """What to keep at session end. Default: nothing."""
        return MemoryUpdate()

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

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

    def respond(self, utterance: str, cancel: threading.Event | None = None) -> Iterator[str]:
        if self.main is None or self.partner is None:
            raise RuntimeError("start_session() before respond()")
        self.turns.append(Turn(self._turn_id(), self.partner.name, utterance.strip()))
        yield from self._bot_turn(utterance, cancel)

    def speak_first(self, text: str | None = None, cancel: threading.Event | None = None) -> Iterator[str]:
        """Open the session as the bot (self-play, EMMA §5.3): with ``text``, log that given utterance
        as the bot's own first turn (e.g. a seed's first utterance); without it, generate an opening
        utterance from the prompt with no partner turn yet."""
        if self.main is None or self.partner is None:
            raise RuntimeError("start_session() before speak_first()")
        if self.turns:
            raise RuntimeError("speak_first() opens a session; this one already has turns")
        if text is None:
            yield from self._bot_turn("", cancel)
            return
        text = text.strip()
        self.last_turn = TurnRecord(user="", reply=text)
        self.turns.append(Turn(self._turn_id(), self.main.name, text))
        yield text

    def _bot_turn(self, utterance: str, cancel: threading.Event | None) -> Iterator[str]:
        history = self.prompt_history()
        memories, memory_ids = self.turn_memories([(t.speaker, t.text) for t in self.turns])
        prompt = self.dialogue.reply_prompt(self.main, self.partner, memories, self.session_index,
                                            history, self.main.name)
        record = TurnRecord(user=utterance, reply="", memory_ids=list(memory_ids))
        self.last_turn = record
        pieces: list[str] = []
        try:
            for piece in self.dialogue.stream_reply(prompt, cancel):
                pieces.append(piece)
                yield piece
        except Cancelled:
            record.cancelled = True
        record.reply = "".join(pieces).strip()
        if record.reply and not record.cancelled:
            self.turns.append(Turn(self._turn_id(), self.main.name, record.reply, list(memory_ids)))

    def end_session(self, progress=None) -> MemoryUpdate:
        if self.main is None or self.partner is None:
            raise RuntimeError("no session to end")
        turns, self.turns = self.turns, []
        update = self.store_session(turns, progress) if turns else MemoryUpdate(notes=["empty session: nothing stored"])
        self.sessions.append({
            "index": self.session_index,
            "partner": {"name": self.partner.name, "job": self.partner.job},
            "turns": [{"id": t.id, "speaker": t.speaker, "text": t.text, "memory_ids": list(t.memory_ids)}
                      for t in turns],
        })
        return update

    def state(self) -> dict:
        return {
            "format": AGENT_STATE_FORMAT,
            "agent": self.name,
            "main": None if self.main is None else {"name": self.main.name, "job": self.main.job},
            "sessions": self.sessions,
            **self.extra_state(),
        }

    def load_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != AGENT_STATE_FORMAT:
            raise ValueError(f"not a {AGENT_STATE_FORMAT} agent state (field 'format')")
        if state.get("agent") != self.name:
            raise ValueError(f"state is for agent {state.get('agent')!r}, not {self.name!r} (field 'agent')")
        main = state.get("main")
        self.main = Speaker(main["name"], main.get("job", "")) if main else None
        self.sessions = list(state.get("sessions", []))
        self.session_index = max((s["index"] for s in self.sessions), default=-1)
        self.turns = []
        self.load_extra_state(state)

    def past_turns(self) -> list[tuple[int, dict]]:
        """Every stored turn of earlier sessions as (session index, turn dict)."""
        return [(s["index"], t) for s in self.sessions for t in s["turns"]]

    def describe(self) -> dict:
        lm = self.dialogue.lm
        return {"agent": self.name, "lm": lm.name, "lm_kind": lm.kind, "lm_device": lm.plan.summary(),
                "lm_reasons": list(lm.plan.reasons)}


class StoreBackedAgent(ChatAgent):
    """A :class:`ChatAgent` whose memory is one :class:`MemoryStore` owned by the main speaker: created at
    the first session, saved and restored with the agent's state (EMMA, the summary and RAG baselines)."""

    def __init__(self, dialogue: DialogueModule):
        super().__init__(dialogue)
        self.store: MemoryStore | None = None

    def start_session(self, main, partner, session_index):
        super().start_session(main, partner, session_index)
        if self.store is None:
            self.store = MemoryStore(main.name)

    def extra_state(self) -> dict:
        return {"memory": None if self.store is None else self.store.to_state()}

    def load_extra_state(self, state: dict) -> None:
        mem = state.get("memory")
        self.store = MemoryStore.from_state(mem) if mem else None
