"""The Agent contract (docs/architecture.md, "The agent contract").

Every system — EMMA, MDR, MiLP and the baselines — is an :class:`Agent`, so the chat page, compare page,
self-play and the benchmarks treat them alike, and reach an agent only through the methods below.

Required: ``start_session`` / ``respond`` / ``end_session`` / ``state`` / ``load_state`` / ``describe``.
Optional capabilities — declared in the system's registry record (``SystemRecord.capabilities``) and reached
only through these methods, which raise :class:`Unsupported` where a system has not got them:

* ``memory_view`` — memories, links and versions as plain data (:func:`engine.memory.view.store_view` shape);
  ``edit_memory`` / ``delete_memory`` change one memory.  An agent without memory shows an empty view.
* ``rewind`` / ``restore`` — edit-and-branch: forget the current session from a user turn on, put turns back.
* ``adapters`` — parameterised memory (e.g. MiLP's per-partner adapters): one dict per adapter.

On every agent (default implementations in :class:`engine.systems.session_agent.SessionLogAgent`):
``ingest_session`` (log a session that already happened, then run the session-end step),
``sample_replies`` (n sampled replies to the current context, not logged; S-Dist) and ``speak_first`` (open a
session as the bot; self-play).

Torch-free: concrete agents import torch inside their model code.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator

from engine.data.model import MemoryUpdate, Speaker

CAPABILITIES = frozenset({"memory_view", "rewind", "adapters"})


class Cancelled(Exception):
    """Raised inside a generation when the caller's cancel event is set."""


class Unsupported(NotImplementedError):
    """The agent's system does not have this optional capability (see its registry record)."""


@dataclass
class TurnRecord:
    """What the agent did for one bot turn: the text and what it was given.

    ``given``: ``[{"kind": "memory"|"turn", "id": ..., "text": ..., ...}]`` — EMMA: the memories it retrieved
    (with ``about`` and ``session``); RAG: past turns; MDR: the history entry it selected.
    ``memory_ids``: the ids of the given items (kept for older callers)."""

    user: str
    reply: str
    memory_ids: list[str] = field(default_factory=list)
    cancelled: bool = False
    given: list[dict] = field(default_factory=list)


def empty_memory_view(owner: str = "") -> dict:
    """The memory view of an agent that keeps no memory."""
    return {"owner": owner, "memories": [], "links": []}


class Agent(ABC):
    """One dialogue system, driven session by session.

    ``respond`` yields text pieces (tokens) as they are generated; setting ``cancel`` stops the
    generation at the next token. After the iterator ends, ``last_turn`` describes the turn.
    """

    name: str = "agent"

    def __init__(self):
        self.main: Speaker | None = None
        self.partner: Speaker | None = None
        self.session_index: int = -1
        self.last_turn: TurnRecord | None = None

    # ------------------------------------------------------------------ required
    @abstractmethod
    def start_session(self, main: Speaker, partner: Speaker, session_index: int) -> None: ...

    @abstractmethod
    def respond(self, utterance: str, cancel: threading.Event | None = None) -> Iterator[str]: ...

    @abstractmethod
    def end_session(self, progress=None) -> MemoryUpdate: ...

    @abstractmethod
    def state(self) -> dict: ...

    @abstractmethod
    def load_state(self, state: dict) -> None: ...

    def describe(self) -> dict:
        """Which models/devices this agent runs on, for the UI (override to add detail)."""
        return {"agent": self.name}

    # ------------------------------------------------------------------ on every agent
    def ingest_session(self, partner: Speaker, session_index: int, turns: list[dict],
                       progress=None) -> MemoryUpdate:
        """A session that already happened (``turns``: ``[{"speaker", "text"}]``): log it without generating,
        then run the system's session-end step."""
        raise Unsupported(f"{self.name} cannot ingest a past session")

    def sample_replies(self, utterance: str, n: int, cancel: threading.Event | None = None) -> list[str]:
        """``n`` sampled replies to the current context plus ``utterance``; nothing is logged."""
        raise Unsupported(f"{self.name} cannot sample replies")

    def ingest_memories(self, memories: list[dict]) -> list[str]:
        """Memories the agent holds before the first session (``[{"about", "text", "session"?}]``, e.g. ConvAI2
        persona lines), kept as given; returns their ids.  Systems without a memory store raise Unsupported."""
        raise Unsupported(f"{self.name} keeps no memories it could be given")

    def speak_first(self, text: str | None = None, cancel: threading.Event | None = None) -> Iterator[str]:
        """Open the current session as the bot (self-play, EMMA §5.3): with ``text``, log that given utterance as
        the bot's own first turn (a seed's first utterance); without it, generate an opening utterance."""
        raise Unsupported(f"{self.name} cannot open a session")

    # ------------------------------------------------------------------ optional capabilities
    def memory_view(self) -> dict:
        """``{"owner", "memories": [{id, about, session, text, source_turns, versions, deleted}],
        "links": [{src, dst, kind}]}``; empty for an agent without memory."""
        return empty_memory_view(getattr(self.main, "name", "") or "")

    def edit_memory(self, memory_id: str, text: str) -> None:
        raise Unsupported(f"{self.name} keeps no editable memory")

    def delete_memory(self, memory_id: str) -> None:
        raise Unsupported(f"{self.name} keeps no editable memory")

    def rewind(self, user_turns: int) -> int:
        """Keep only the current session's first ``user_turns`` user turns (and their replies); returns
        how many turns are kept.  The forgotten turns stay with the caller as a branch."""
        raise Unsupported(f"{self.name} cannot rewind a session")

    def restore(self, turns: list[dict]) -> int:
        """Replace the current session's turns (``[{"speaker", "text", "memory_ids"?}]``), e.g. after a
        worker restart; returns how many were restored."""
        raise Unsupported(f"{self.name} cannot restore a session")

    def stop_session_end(self) -> None:
        """Ask a running :meth:`end_session` (called from another thread) to finish early and keep what it has
        done so far, e.g. MiLP's per-partner adapter training. Default: nothing to stop — the session end
        runs to completion."""

    def adapters(self) -> list[dict]:
        """Parameterised memory: ``[{"partner", "name", "parameters", "trained_turns", "loss", ...}]``."""
        return []
