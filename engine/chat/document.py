"""A chat as data — the one model of the terminal chat and the app (docs/chat-format.md, ``memlab-chat/2``):
sessions with changing partners, turns, branches, what each session end stored, the agent's state.

Qt-free and torch-free. The user plays each session's *partner*; the agent is the episode's
*main speaker* (MiSC, EMMA paper §3: one main speaker across sessions with changing partners).
Editing a user turn keeps the turns it replaced as a *branch* of that session, never deletes them.
A chat exports to ``memlab-episode/1`` (bot turns carry the ids of the memories they were given,
as MiSC memory tags) and to Markdown.  Both kinds of ``memlab-chat/1`` file still open: the app's (the
same shape as /2) and the terminal chat's (a ``log`` of sessions whose turns name their speaker).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.data.model import Episode, Link, Memory, Session, Speaker, Turn

CHAT_FORMAT = "memlab-chat/2"
OLD_FORMAT = "memlab-chat/1"


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


@dataclass
class ChatTurn:
    role: str  # "user" (the partner) or "bot" (the main speaker)
    text: str
    memories: list[dict] = field(default_factory=list)  # bot turns: what it was given (TurnRecord.given items)
    cancelled: bool = False
    error: str = ""
    seconds: float = 0.0


@dataclass
class ChatSession:
    index: int
    partner: dict  # {"name", "job"}
    turns: list[ChatTurn] = field(default_factory=list)
    branches: list[dict] = field(default_factory=list)  # {"at": turn index, "turns": [ChatTurn dicts], "time"}
    ended: bool = False
    stored: dict = field(default_factory=dict)  # the MemoryUpdate at session end

    def partner_speaker(self) -> Speaker:
        return Speaker(self.partner.get("name", ""), self.partner.get("job", ""))

    def branch_from(self, turn_index: int) -> None:
        """Move turns ``turn_index``… to a new branch (kept, shown as an earlier version)."""
        cut = self.turns[turn_index:]
        if cut:
            self.branches.append({"at": turn_index, "time": _now(), "turns": [asdict(t) for t in cut]})
        del self.turns[turn_index:]

    def bot_turns_before(self, turn_index: int) -> int:
        return sum(1 for t in self.turns[:turn_index] if t.role == "bot")


@dataclass
class ChatDocument:
    system: str
    main: dict  # {"name", "job"}
    id: str = field(default_factory=lambda: "chat-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2))
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    sessions: list[ChatSession] = field(default_factory=list)
    memory: dict = field(default_factory=dict)  # last memory snapshot (Agent.memory_view())
    agent_state: dict | None = None  # the agent's state after the last session end (to resume)

    # -- structure ---------------------------------------------------------------------------
    @property
    def current(self) -> ChatSession | None:
        return self.sessions[-1] if self.sessions else None

    def main_speaker(self) -> Speaker:
        return Speaker(self.main.get("name", ""), self.main.get("job", ""))

    def new_session(self, partner: dict) -> ChatSession:
        s = ChatSession(len(self.sessions), {"name": partner.get("name", ""), "job": partner.get("job", "")})
        self.sessions.append(s)
        return s

    def title(self) -> str:
        partners = []
        for s in self.sessions:
            if s.partner["name"] not in partners:
                partners.append(s.partner["name"])
        return f"{self.main['name']} ({self.system}) with {', '.join(partners) or 'nobody yet'}"

    # -- persistence -------------------------------------------------------------------------
    def open_session(self) -> ChatSession | None:
        """The last session if it has not ended yet."""
        s = self.current
        return s if s is not None and not s.ended else None

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"format": CHAT_FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict) -> "ChatDocument":
        """A ``memlab-chat/2`` document, or either kind of ``memlab-chat/1``; errors name the field."""
        if not isinstance(d, dict):
            raise ValueError(f"not a saved MemLab chat (a JSON object expected, got {type(d).__name__})")
        fmt = d.get("format")
        if fmt == OLD_FORMAT and "log" in d:
            return _from_terminal_v1(d)
        if fmt not in (CHAT_FORMAT, OLD_FORMAT):
            raise ValueError(f"not a saved MemLab chat (format {fmt!r}, expected {CHAT_FORMAT!r} or {OLD_FORMAT!r})")
        sessions = []
        for k, s in enumerate(_field(d, "sessions", list, [])):
            where = f"sessions[{k}]"
            turns = []
            for j, t in enumerate(_field(s, "turns", list, [], where)):
                try:
                    turns.append(ChatTurn(**t))
                except TypeError as e:
                    raise ValueError(f"{where}.turns[{j}]: {e}") from None
            sessions.append(ChatSession(int(_field(s, "index", int, None, where)), dict(_field(s, "partner", dict, None, where)),
                                        turns, list(s.get("branches", [])), bool(s.get("ended")),
                                        dict(s.get("stored") or {})))
        return cls(str(_field(d, "system", str)), dict(_field(d, "main", dict)), str(_field(d, "id", str)),
                   d.get("created", ""), d.get("updated", ""), sessions, dict(d.get("memory") or {}),
                   d.get("agent_state"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    def save(self, path) -> Path:
        """Write atomically (temp file, fsync, rename): a crash or kill never leaves half a file."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> "ChatDocument":
        """Read a saved chat; a broken file is an error naming the file (and line/column or field)."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        except OSError as e:
            raise ValueError(f"{path}: cannot read a saved chat ({e.strerror or e})") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None

    # -- export ------------------------------------------------------------------------------
    def to_episode(self, include_cancelled: bool = False) -> Episode:
        """The chat as a ``memlab-episode/1`` episode (current branch; memories and links as stored).

        Replies that were stopped (Stop, or the window closed while streaming) are left out unless
        ``include_cancelled``; how many were left out is recorded in the episode's meta."""
        main = self.main_speaker()
        partners: list[Speaker] = []
        sessions = []
        turn_ids = set()
        left_out = 0
        for s in self.sessions:
            p = s.partner_speaker()
            if all(q.name != p.name for q in partners):
                partners.append(p)
            turns = []
            for k, t in enumerate(s.turns):
                if t.cancelled and not include_cancelled:
                    left_out += 1
                    continue
                tid = f"s{s.index}t{k}"
                turn_ids.add(tid)
                turns.append(Turn(tid, main.name if t.role == "bot" else p.name, t.text,
                                  [m["id"] for m in t.memories if "id" in m]))
            sessions.append(Session(s.index, p, "", turns))
        known_sessions = {s.index for s in self.sessions}
        memories = [Memory(m["id"], main.name, m.get("about", ""), m.get("text", ""), int(m.get("session", 0)),
                           [t for t in m.get("source_turns", []) if t in turn_ids])
                    for m in self.memory.get("memories", []) if not m.get("deleted")
                    and int(m.get("session", 0)) in known_sessions]
        ids = {m.id for m in memories}
        speakers = {main.name} | {p.name for p in partners}
        memories = [m for m in memories if m.about in speakers]
        ids = {m.id for m in memories}
        for s in sessions:
            for t in s.turns:
                t.memory_ids = [i for i in t.memory_ids if i in ids]
        links = [Link(l["src"], l["dst"], l.get("kind", "related")) for l in self.memory.get("links", [])
                 if l["src"] in ids and l["dst"] in ids]
        return Episode(self.id, main, partners, sessions, memories, links, "live-chat",
                       {"system": self.system, "created": self.created, "updated": self.updated,
                        "stopped_replies_left_out": left_out, "stopped_replies_included": include_cancelled})

    def to_markdown(self) -> str:
        main = self.main_speaker()
        out = [f"# Chat: {main.label()} — {self.system}", "", f"Started {self.created}, last saved {self.updated}.", ""]
        for s in self.sessions:
            p = s.partner_speaker()
            out += [f"## Session {s.index + 1} with {p.label()}", ""]
            for t in s.turns:
                who = main.name if t.role == "bot" else p.name
                note = " *(stopped)*" if t.cancelled else ""
                out.append(f"**{who}:** {t.text}{note}")
                if t.memories:
                    out.append("")
                    out += [f"> memory given: {m.get('text', '')} *(about {m.get('about', '?')})*" for m in t.memories]
                out.append("")
            if s.branches:
                out.append(f"*{len(s.branches)} earlier branch(es) of this session kept in the saved chat.*")
                out.append("")
            stored = s.stored.get("memories", []) if s.stored else []
            if stored:
                out += ["**Stored at the end of the session:**", ""]
                out += [f"- {m.get('text', '')} *(about {m.get('about', '?')})*" for m in stored]
                out.append("")
        return "\n".join(out)


_MISSING = object()


def _field(d: dict, name: str, kind: type, default=_MISSING, where: str = ""):
    label = f"{where}.{name}" if where else name
    if not isinstance(d, dict):
        raise ValueError(f"{where or 'chat'}: a JSON object expected")
    if name not in d:
        if default is _MISSING or default is None:
            raise ValueError(f"field {label!r} is missing")
        return default
    value = d[name]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"field {label!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _from_terminal_v1(d: dict) -> ChatDocument:
    """The terminal chat's ``memlab-chat/1``: ``log`` of sessions whose turns name their speaker."""
    main = dict(_field(d, "main", dict))
    main_name = main.get("name", "")
    sessions = []
    log = _field(d, "log", list, [])
    for k, entry in enumerate(log):
        where = f"log[{k}]"
        turns = []
        for j, t in enumerate(_field(entry, "turns", list, [], where)):
            if not isinstance(t, dict) or "text" not in t:
                raise ValueError(f"field '{where}.turns[{j}].text' is missing")
            bot = t.get("speaker") == main_name
            turns.append(ChatTurn("bot" if bot else "user", str(t["text"]),
                                  [dict(m) for m in t.get("memories", [])] if bot else [],
                                  bool(t.get("cancelled", False))))
        still_open = bool(d.get("open")) and k == len(log) - 1
        sessions.append(ChatSession(int(_field(entry, "index", int, None, where)),
                                    dict(_field(entry, "partner", dict, None, where)), turns, [],
                                    not still_open, dict(entry.get("stored") or {})))
    state = d.get("agent_state")
    memory: dict = {}
    if isinstance(state, dict) and state.get("memory"):
        from engine.memory import MemoryStore
        from engine.memory.view import store_view

        memory = store_view(MemoryStore.from_state(state["memory"]), main_name)
    return ChatDocument(str(_field(d, "agent", str)), main, sessions=sessions, memory=memory, agent_state=state)
