"""The dialogue data model shared by the engine, the annotation core and the desktop app.

Shapes follow the MiSC dataset (EMMA paper, §3): an *episode* has one main speaker and several
partners; each *session* has exactly one partner and an event; the main speaker keeps an
*egocentric memory* — sentences about itself and about each partner, written from its own
perspective (§3.3 "Memory Generation") — with *links* from a newer memory to an older one
(§3.3 "Memory Connection"; kind ``related`` or ``update`` when a fact changed) and *tags* on the
utterances that used a memory (§3.3 "Memory Tagging"; stored as ``Turn.memory_ids``).

Torch-free and Qt-free: ``annotation`` imports this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterator

LINK_KINDS = ("related", "update")


@dataclass(frozen=True)
class Speaker:
    """A person in a scenario: a name and a job or relationship ("teacher", "Alice's husband")."""

    name: str
    job: str = ""

    @classmethod
    def parse(cls, text: str) -> "Speaker":
        """``"Alice:teacher"`` → ``Speaker("Alice", "teacher")`` (the CLI's ``NAME:JOB`` form)."""
        name, _, job = text.partition(":")
        name = name.strip()
        if not name:
            raise ValueError(f"speaker {text!r} has no name; write NAME:JOB, e.g. Alice:teacher")
        return cls(name, job.strip())

    def label(self) -> str:
        return f"{self.name} ({self.job})" if self.job else self.name


@dataclass
class Turn:
    """One utterance. ``memory_ids`` are the memories the utterance used (MiSC memory tags)."""

    id: str
    speaker: str
    text: str
    memory_ids: list[str] = field(default_factory=list)


@dataclass
class Memory:
    """One memory sentence held by ``owner`` (the main speaker) about ``about``.

    ``session`` is the session index (0-based) in which it was formed; ``source_turns`` the ids of
    the turns it summarises.
    """

    id: str
    owner: str
    about: str
    text: str
    session: int
    source_turns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Link:
    """A directed link from a newer memory (``src``) to an older one (``dst``)."""

    src: str
    dst: str
    kind: str = "related"


@dataclass
class Session:
    """One session: a single partner, the event that frames it, and its turns."""

    index: int
    partner: Speaker
    event: str = ""
    turns: list[Turn] = field(default_factory=list)
    date: str | None = None


@dataclass
class Episode:
    """A MiSC-shaped episode: one main speaker across sessions with changing partners."""

    id: str
    main: Speaker
    partners: list[Speaker] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    memories: list[Memory] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    source: str = ""
    meta: dict = field(default_factory=dict)

    # -- convenience views -------------------------------------------------------------
    def memory(self, memory_id: str) -> Memory:
        for m in self.memories:
            if m.id == memory_id:
                return m
        raise KeyError(memory_id)

    def turns(self) -> Iterator[tuple[Session, Turn]]:
        for s in self.sessions:
            for t in s.turns:
                yield s, t

    def tags(self) -> Iterator[tuple[str, str]]:
        """Every (turn id, memory id) tag in the episode."""
        for _, t in self.turns():
            for mid in t.memory_ids:
                yield t.id, mid

    def speaker(self, name: str) -> Speaker:
        if name == self.main.name:
            return self.main
        for p in self.partners:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MemoryUpdate:
    """What an agent stored at the end of a session (the Agent contract's ``end_session``)."""

    memories: list[Memory] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    adapters: list[str] = field(default_factory=list)
    #: candidates the agent considered and did not store, each ``{"about", "text", "reason"}`` (EMMA's
    #: grounding and well-formedness checks); shown to the user, never stored as memories
    rejected: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
