"""A read-only picture of one agent's egocentric memory, for the memory page and graph.

Built either from what the engine worker reports (``Agent.memory_view()``, the shape of
``engine.memory.view.store_view``) or from a saved episode (``memlab-episode/1``), so the page works on
stored chats without the engine. Links point from the newer memory to the older (EMMA paper §3.3 "Memory
Connection"); ``kind`` is ``related`` or ``update``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MemoryRecord:
    id: str
    about: str
    session: int
    text: str
    source_turns: list[str] = field(default_factory=list)
    versions: list[dict] = field(default_factory=list)  # earlier texts, oldest first
    deleted: bool = False


@dataclass
class MemorySnapshot:
    owner: str = ""
    memories: list[MemoryRecord] = field(default_factory=list)
    links: list[tuple[str, str, str]] = field(default_factory=list)  # (src newer, dst older, kind)
    agent: str = ""  # the engine agent id it came from ("" for a saved episode)
    title: str = ""
    turn_text: dict[str, str] = field(default_factory=dict)  # turn id → "Speaker: text" (source turns)
    # parameterised memory (the "adapters" capability, e.g. MiLP): one dict per partner adapter; None for a
    # system whose memory is text
    adapters: list[dict] | None = None

    @classmethod
    def from_worker(cls, data: dict, agent: str = "", title: str = "", turn_text: dict | None = None) -> "MemorySnapshot":
        mems = [MemoryRecord(str(m["id"]), str(m.get("about", "")), int(m.get("session", 0)), str(m.get("text", "")),
                             list(m.get("source_turns", [])), list(m.get("versions", [])), bool(m.get("deleted", False)))
                for m in data.get("memories", [])]
        links = [(str(l["src"]), str(l["dst"]), str(l.get("kind", "related"))) for l in data.get("links", [])]
        adapters = [dict(a) for a in data["adapters"]] if isinstance(data.get("adapters"), list) else None
        return cls(str(data.get("owner", "")), mems, links, agent, title, dict(turn_text or {}), adapters)

    @classmethod
    def from_episode(cls, episode, title: str = "") -> "MemorySnapshot":
        mems = [MemoryRecord(m.id, m.about, m.session, m.text, list(m.source_turns)) for m in episode.memories]
        links = [(l.src, l.dst, l.kind) for l in episode.links]
        turns = {t.id: f"{t.speaker}: {t.text}" for _, t in episode.turns()}
        return cls(episode.main.name, mems, links, "", title or episode.id, turns)

    def to_dict(self) -> dict:
        return {"owner": self.owner,
                "memories": [{"id": m.id, "about": m.about, "session": m.session, "text": m.text,
                              "source_turns": m.source_turns, "versions": m.versions, "deleted": m.deleted}
                             for m in self.memories],
                "links": [{"src": s, "dst": d, "kind": k} for s, d, k in self.links],
                **({"adapters": self.adapters} if self.adapters is not None else {})}

    # -- views -------------------------------------------------------------------------------
    def live(self) -> list[MemoryRecord]:
        return [m for m in self.memories if not m.deleted]

    def by_id(self) -> dict[str, MemoryRecord]:
        return {m.id: m for m in self.memories}

    def speakers(self) -> list[str]:
        """Speakers the memories are about: the owner first, then partners in order of appearance."""
        seen = []
        if self.owner and any(m.about == self.owner for m in self.memories):
            seen.append(self.owner)
        for m in sorted(self.memories, key=lambda m: m.session):
            if m.about not in seen:
                seen.append(m.about)
        return seen

    def sessions(self) -> list[int]:
        return sorted({m.session for m in self.memories})

    def filtered(self, about: str | None = None, session: int | None = None, text: str = "") -> list[MemoryRecord]:
        needle = text.lower().strip()
        return [m for m in self.live()
                if (about is None or m.about == about) and (session is None or m.session == session)
                and (not needle or needle in m.text.lower())]

    def graph(self):
        """The link graph as a networkx ``DiGraph`` (node attrs about/session/text; edge attr kind)."""
        import networkx as nx

        g = nx.DiGraph()
        for m in self.live():
            g.add_node(m.id, about=m.about, session=m.session, text=m.text)
        for s, d, k in self.links:
            if s in g and d in g:
                g.add_edge(s, d, kind=k)
        return g

    def links_of(self, memory_id: str) -> list[tuple[str, str, str]]:
        return [l for l in self.links if memory_id in (l[0], l[1])]
