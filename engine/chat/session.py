"""A mixed-session chat driven from outside (terminal, script, tests): one :class:`Agent`, one main
speaker, a partner per session (EMMA paper §3: the partner changes between sessions).

:class:`ChatSession` keeps a log of every session — turns, the memories each bot turn was given, and
what the agent stored at the session's end — and saves/resumes the whole chat as JSON.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from engine.agent import Agent, Unsupported
from engine.data.model import MemoryUpdate, Speaker

CHAT_FORMAT = "memlab-chat/1"


class ChatSession:
    """Main speaker + agent + the session log. Call :meth:`set_partner` before the first :meth:`say`."""

    def __init__(self, agent: Agent, main: Speaker):
        self.agent = agent
        self.main = main
        self.partner: Speaker | None = None
        self.index = -1
        self.log: list[dict] = []  # one dict per session: index, partner, turns, stored
        self._open = False

    @property
    def current(self) -> dict | None:
        return self.log[-1] if self._open else None

    def set_partner(self, partner: Speaker, progress=None) -> MemoryUpdate | None:
        """End the current session (if any; returns what was stored) and start one with ``partner``."""
        update = self.end_session(progress)
        self.partner = partner
        self.index += 1
        self.agent.start_session(self.main, partner, self.index)
        self.log.append({"index": self.index, "partner": {"name": partner.name, "job": partner.job},
                         "turns": [], "stored": None})
        self._open = True
        return update

    def say(self, text: str, on_token: Callable[[str], None] | None = None,
            cancel: threading.Event | None = None) -> dict:
        """One user utterance and the bot's streamed reply; returns the bot turn's log entry."""
        if not self._open:
            raise RuntimeError("no partner yet: use /partner NAME:JOB (or --partner) first")
        for piece in self.agent.respond(text, cancel):
            if on_token:
                on_token(piece)
        rec = self.agent.last_turn
        turns = self.current["turns"]
        turns.append({"speaker": self.partner.name, "text": text.strip()})
        bot = {"speaker": self.main.name, "text": rec.reply, "cancelled": rec.cancelled,
               "memories": [{k: v for k, v in g.items() if k != "kind"} for g in rec.given]}
        turns.append(bot)
        return bot

    def end_session(self, progress=None) -> MemoryUpdate | None:
        if not self._open:
            return None
        update = self.agent.end_session(progress)
        self.current["stored"] = {
            "memories": [{"id": m.id, "about": m.about, "session": m.session, "text": m.text} for m in update.memories],
            "links": [{"src": l.src, "dst": l.dst, "kind": l.kind} for l in update.links],
            "notes": list(update.notes),
            "rejected": list(getattr(update, "rejected", []) or []),
        }
        self._open = False
        return update

    # ------------------------------------------------------------------ save / resume
    def to_json(self) -> dict:
        return {"format": CHAT_FORMAT, "agent": self.agent.name,
                "main": {"name": self.main.name, "job": self.main.job},
                "partner": None if self.partner is None else {"name": self.partner.name, "job": self.partner.job},
                "index": self.index, "open": self._open, "log": self.log,
                "agent_state": self.agent.state()}

    def save(self, path) -> None:
        """Write atomically (temp file + rename), so a crash never leaves a half-written chat."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def resume(cls, agent: Agent, path) -> "ChatSession":
        """Restore a saved chat; an open session continues with its turns so far."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read a saved chat ({e})") from None
        if not isinstance(data, dict) or data.get("format") != CHAT_FORMAT:
            raise ValueError(f"{path}: not a {CHAT_FORMAT} file (field 'format')")
        if data.get("agent") != agent.name:
            raise ValueError(f"{path}: saved with agent {data.get('agent')!r}, not {agent.name!r} (field 'agent')")
        main = Speaker(data["main"]["name"], data["main"].get("job", ""))
        chat = cls(agent, main)
        agent.load_state(data["agent_state"])
        chat.log, chat.index = data.get("log", []), int(data.get("index", -1))
        if data.get("partner"):
            chat.partner = Speaker(data["partner"]["name"], data["partner"].get("job", ""))
        if data.get("open") and chat.partner is not None:
            agent.start_session(main, chat.partner, chat.index)
            turns = chat.log[-1]["turns"]
            try:  # continue the open session with its turns
                agent.restore([{"speaker": t["speaker"], "text": t["text"],
                                "memory_ids": [m["id"] for m in t.get("memories", [])]} for t in turns])
            except Unsupported:
                pass
            chat._open = True
        return chat
