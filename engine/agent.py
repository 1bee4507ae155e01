"""The Agent contract (DESIGN.md, "The agent contract").

Every system — EMMA, MDR, MiLP and the baselines — is an :class:`Agent`, so the chat page,
compare page, self-play and the benchmarks treat them alike. Torch-free: concrete agents import
torch inside their model code.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterator

from engine.data.model import MemoryUpdate, Speaker


class Cancelled(Exception):
    """Raised inside a generation when the caller's cancel event is set."""


@dataclass
class TurnRecord:
    """What the agent did for one bot turn: the text and the memories it was given."""

    user: str
    reply: str
    memory_ids: list[str] = field(default_factory=list)
    cancelled: bool = False


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
