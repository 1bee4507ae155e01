"""The generic session-log agent (docs/architecture.md, "The agent contract"): the part every system on a
language model shares — the session log (turns with ids and what each bot turn was given), a turn run as
"choose what to give → build the prompt → stream the reply", cancel, rewind/restore, ingesting a past
session, sampling replies, and saving/restoring the log.

It depends only on a small :class:`Responder` (prompt building + streaming + sampling); EMMA's
``DialogueModule`` is one.  A system subclasses :class:`SessionLogAgent` (or :class:`StoreBackedAgent` when
its memory is one ``MemoryStore``) and says only which memories a turn gets (:meth:`turn_memories`), which
turns the prompt shows (:meth:`prompt_history`) and what it keeps at session end (:meth:`store_session`).
"""

from __future__ import annotations

import threading
from typing import Iterator, Protocol, runtime_checkable

from engine.agent import Agent, Cancelled, TurnRecord
from engine.data.model import MemoryUpdate, Speaker, Turn
from engine.memory import MemoryStore
from engine.memory.view import memory_brief, store_view

AGENT_STATE_FORMAT = "memlab-agent/1"
CONTEXT_TURNS = 4  # the newest turns a retrieval context holds (EMMA §4.2; within the encoder's 512 tokens)


def recent_context(history: list[tuple[str, str]], turns: int = CONTEXT_TURNS) -> str:
    """The retrieval context: the texts of the newest ``turns`` turns, one per line."""
    return "\n".join(text for _, text in history[-turns:])


@runtime_checkable
class Responder(Protocol):
    """What a :class:`SessionLogAgent` needs from its language model."""

    def reply_prompt(self, main: Speaker, partner: Speaker, memories: list[tuple[str, list[str]]],
                     session_index: int, history: list[tuple[str, str]], bot_name: str | None = None) -> str:
        """The generation prompt (memories as ``(text, [linked texts])``), fitted to the context window."""

    def stream_reply(self, prompt: str, cancel: threading.Event | None = None) -> Iterator[str]:
        """Text pieces of the reply; raises :class:`engine.agent.Cancelled` when ``cancel`` is set."""

    def sample_replies(self, prompt: str, n: int, cancel: threading.Event | None = None) -> list[str]:
        """``n`` sampled replies to ``prompt``."""

    def describe(self) -> dict:
        """The models it runs on, for the UI."""


class SessionLogAgent(Agent):
    """An :class:`Agent` on a :class:`Responder`; see the module docstring."""

    name = "session-agent"

    def __init__(self, responder: Responder):
        super().__init__()
        self.responder = responder
        self.sessions: list[dict] = []  # {"index", "partner": {name, job}, "turns": [Turn dicts]}
        self.turns: list[Turn] = []  # the current session

    @property
    def dialogue(self):
        """The responder under its older name (EMMA's dialogue module)."""
        return self.responder

    # ------------------------------------------------------------------ hooks
    def turn_memories(self, history: list[tuple[str, str]]) -> tuple[list[tuple[str, list[str]]], list[str]]:
        """(memories for the prompt as (text, [linked texts]), their ids). Default: none."""
        return [], []

    def given_items(self, ids: list[str]) -> list[dict]:
        """``TurnRecord.given`` for the ids :meth:`turn_memories` returned."""
        return [{"kind": "memory", "id": i, "text": ""} for i in ids]

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

    def _check_open(self) -> None:
        if self.main is None or self.partner is None:
            raise RuntimeError("start_session() before respond()")

    def _prompt(self) -> tuple[str, list[str]]:
        history = self.prompt_history()
        memories, memory_ids = self.turn_memories([(t.speaker, t.text) for t in self.turns])
        prompt = self.responder.reply_prompt(self.main, self.partner, memories, self.session_index,
                                             history, self.main.name)
        return prompt, list(memory_ids)

    def respond(self, utterance: str, cancel: threading.Event | None = None) -> Iterator[str]:
        self._check_open()
        self.turns.append(Turn(self._turn_id(), self.partner.name, utterance.strip()))
        yield from self._bot_turn(utterance, cancel)

    def speak_first(self, text: str | None = None, cancel: threading.Event | None = None) -> Iterator[str]:
        self._check_open()
        if self.turns:
            raise RuntimeError("speak_first() opens a session; this one already has turns")
        if text is None:  # the prompt with no partner turn yet: the bot's opening utterance
            yield from self._bot_turn("", cancel)
            return
        text = text.strip()
        self.last_turn = TurnRecord(user="", reply=text)
        self.turns.append(Turn(self._turn_id(), self.main.name, text))
        yield text

    def _bot_turn(self, utterance: str, cancel: threading.Event | None) -> Iterator[str]:
        prompt, memory_ids = self._prompt()
        record = TurnRecord(user=utterance, reply="", memory_ids=memory_ids, given=self.given_items(memory_ids))
        self.last_turn = record
        pieces: list[str] = []
        try:
            for piece in self.responder.stream_reply(prompt, cancel):
                pieces.append(piece)
                yield piece
        except Cancelled:
            record.cancelled = True
        record.reply = "".join(pieces).strip()
        if record.reply and not record.cancelled:
            self.turns.append(Turn(self._turn_id(), self.main.name, record.reply, list(memory_ids)))

    def sample_replies(self, utterance: str, n: int, cancel: threading.Event | None = None) -> list[str]:
        self._check_open()
        saved = list(self.turns)
        self.turns.append(Turn(self._turn_id(), self.partner.name, utterance.strip()))
        try:
            prompt, _ = self._prompt()
        finally:
            self.turns = saved
        return self.responder.sample_replies(prompt, n, cancel)

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

    def ingest_session(self, partner: Speaker, session_index: int, turns: list[dict],
                       progress=None) -> MemoryUpdate:
        if self.main is None:
            raise RuntimeError("the agent's main speaker is not set (start a session or set agent.main first)")
        self.start_session(self.main, partner, session_index)
        self.restore(turns)
        return self.end_session(progress)

    def rewind(self, user_turns: int) -> int:
        partner = getattr(self.partner, "name", None)
        user_positions = [i for i, t in enumerate(self.turns) if t.speaker == partner]
        if not 0 <= user_turns <= len(user_positions):
            raise IndexError(f"turn {user_turns} is not in this session (it has {len(user_positions)} user turns)")
        cut = user_positions[user_turns] if user_turns < len(user_positions) else len(self.turns)
        del self.turns[cut:]
        return cut

    def restore(self, turns: list[dict]) -> int:
        self.turns = [Turn(f"s{self.session_index}t{i}", str(t["speaker"]), str(t["text"]),
                           [str(m) for m in t.get("memory_ids", [])]) for i, t in enumerate(turns)]
        return len(self.turns)

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
        return {"agent": self.name, **self.responder.describe()}


ChatAgent = SessionLogAgent  # the older name


class StoreBackedAgent(SessionLogAgent):
    """A :class:`SessionLogAgent` whose memory is one :class:`MemoryStore` owned by the main speaker: created
    at the first session, saved and restored with the agent's state (EMMA, the summary and RAG baselines)."""

    def __init__(self, responder: Responder):
        super().__init__(responder)
        self.store: MemoryStore | None = None

    def start_session(self, main, partner, session_index):
        super().start_session(main, partner, session_index)
        if self.store is None:
            self.store = MemoryStore(main.name)

    def given_items(self, ids):
        if self.store is None:
            return super().given_items(ids)
        return [memory_brief(self.store, i) for i in ids]

    def ingest_memories(self, memories: list[dict]) -> list[str]:
        if self.main is None:
            raise RuntimeError("the agent's main speaker is not set (start a session or set agent.main first)")
        if self.store is None:
            self.store = MemoryStore(self.main.name)
        return [self.store.add(str(m["about"]), str(m["text"]), int(m.get("session", 0)), []).id for m in memories]

    def memory_view(self) -> dict:
        return store_view(self.store, getattr(self.main, "name", "") or "")

    def _own_store(self) -> MemoryStore:
        if self.store is None:
            raise ValueError(f"{self.name} has no memories yet")
        return self.store

    def edit_memory(self, memory_id: str, text: str) -> None:
        self._own_store().edit(memory_id, text)

    def delete_memory(self, memory_id: str) -> None:
        self._own_store().delete(memory_id)

    def extra_state(self) -> dict:
        return {"memory": None if self.store is None else self.store.to_state()}

    def load_extra_state(self, state: dict) -> None:
        mem = state.get("memory")
        self.store = MemoryStore.from_state(mem) if mem else None
