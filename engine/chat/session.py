"""A mixed-session chat driven from outside (terminal, script, tests): one :class:`Agent`, one main speaker, a
partner per session (EMMA paper §3: the partner changes between sessions).

:class:`ChatSession` drives the agent and keeps everything in a :class:`engine.chat.document.ChatDocument` — the
same data model and ``memlab-chat/2`` file as the desktop app (docs/chat-format.md): turns, what each bot turn
was given, what each session end stored, the memory view and the agent's state.  ``resume`` opens
``memlab-chat/2`` and both kinds of ``memlab-chat/1``.
"""

from __future__ import annotations

import threading
from typing import Callable

from engine.agent import Agent, Unsupported
from engine.chat.document import ChatDocument, ChatSession as DocSession, ChatTurn
from engine.data.model import MemoryUpdate, Speaker


class ChatSession:
    """Main speaker + agent + the chat document. Call :meth:`set_partner` before the first :meth:`say`."""

    def __init__(self, agent: Agent, main: Speaker, doc: ChatDocument | None = None):
        self.agent = agent
        self.main = main
        self.doc = doc or ChatDocument(agent.name, {"name": main.name, "job": main.job})

    @property
    def current(self) -> DocSession | None:
        """The open session of the document (``None`` between sessions)."""
        return self.doc.open_session()

    @property
    def partner(self) -> Speaker | None:
        return self.doc.current.partner_speaker() if self.doc.current else None

    @property
    def index(self) -> int:
        return self.doc.current.index if self.doc.current else -1

    def set_partner(self, partner: Speaker, progress=None) -> MemoryUpdate | None:
        """End the current session (if any; returns what was stored) and start one with ``partner``."""
        update = self.end_session(progress)
        index = self.index + 1
        self.agent.start_session(self.main, partner, index)
        session = self.doc.new_session({"name": partner.name, "job": partner.job})
        session.index = index
        return update

    def say(self, text: str, on_token: Callable[[str], None] | None = None,
            cancel: threading.Event | None = None) -> ChatTurn:
        """One user utterance and the bot's streamed reply; returns the bot turn."""
        session = self.current
        if session is None:
            raise RuntimeError("no partner yet: use /partner NAME:JOB (or --partner) first")
        for piece in self.agent.respond(text, cancel):
            if on_token:
                on_token(piece)
        rec = self.agent.last_turn
        bot = ChatTurn("bot", rec.reply, [dict(g) for g in rec.given], rec.cancelled)
        session.turns += [ChatTurn("user", text.strip()), bot]
        return bot

    def end_session(self, progress=None) -> MemoryUpdate | None:
        session = self.current
        if session is None:
            return None
        update = self.agent.end_session(progress)
        session.ended = True
        session.stored = update.to_dict()
        self.doc.memory = self.agent.memory_view()
        self.doc.agent_state = self.agent.state()
        return update

    # ------------------------------------------------------------------ save / resume
    def save(self, path) -> None:
        """Write the document (``memlab-chat/2``) atomically; an open session is saved with its turns."""
        import datetime as dt

        self.doc.updated = dt.datetime.now().isoformat(timespec="seconds")
        self.doc.agent_state = self.agent.state()  # the open session's turns are in the document
        self.doc.memory = self.agent.memory_view()
        self.doc.save(path)

    @classmethod
    def resume(cls, agent: Agent, path) -> "ChatSession":
        """Restore a saved chat; an open session continues with its turns so far."""
        doc = ChatDocument.load(path)
        if doc.system != agent.name:
            raise ValueError(f"{path}: saved with system {doc.system!r}, not {agent.name!r} (field 'system')")
        main = doc.main_speaker()
        if doc.agent_state is not None:
            agent.load_state(doc.agent_state)
        chat = cls(agent, main, doc)
        session = doc.open_session()
        if session is not None:
            agent.start_session(main, session.partner_speaker(), session.index)
            speakers = {"bot": main.name, "user": session.partner.get("name", "")}
            try:  # continue the open session with its turns
                agent.restore([{"speaker": speakers[t.role], "text": t.text,
                                "memory_ids": [m["id"] for m in t.memories if "id" in m]}
                               for t in session.turns if not t.cancelled and t.text])
            except Unsupported:
                pass
        return chat
