"""One engine agent as seen from a page: create it, run sessions and turns, all asynchronously.

Wraps :class:`desktop.engine_client.EngineClient` requests for one agent id and turns the
replies into Qt signals. The Chat page uses one; the Compare page one per panel.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal


class AgentSession(QObject):
    ready = Signal(dict)  # agent created: {"describe": {...}}
    token = Signal(str)
    replied = Signal(dict)  # the turn: reply, memory_ids, memories, cancelled, seconds
    failed = Signal(str, str)  # op, message
    progress = Signal(str, float, float)  # label, done, total (session end, model loading)
    session_started = Signal(int)
    session_ended = Signal(dict)  # update, memory, state
    memory_loaded = Signal(dict)  # a memory snapshot dict

    def __init__(self, engine, agent_id: str, system: str, main: dict, options: dict | None = None, parent=None):
        super().__init__(parent)
        self.engine = engine
        self.agent_id = agent_id
        self.system = system
        self.main = dict(main)
        self.options = dict(options or {})
        self.busy = False
        self.created = False
        self.respond_request: int | None = None
        self.end_request: int | None = None

    def _req(self, op, on_done=None, **fields):
        def done(result):
            self.busy = False
            if on_done:
                on_done(result)

        def error(message):
            self.busy = False
            self.failed.emit(op, message)

        self.busy = True
        return self.engine.request(op, agent=self.agent_id, on_done=done, on_error=error,
                                   on_progress=lambda label, d, t: self.progress.emit(label, d, t), **fields)

    def create(self, state: dict | None = None):
        def created(result):
            self.created = True
            self.ready.emit(result or {})

        self._req("create_agent", created, system=self.system, main=self.main, options=self.options)
        if state:
            self.engine.request("load_state", agent=self.agent_id, state=state,
                                on_error=lambda m: self.failed.emit("load_state", m))

    def start_session(self, partner: dict, index: int):
        self._req("start_session", lambda r: self.session_started.emit(index), partner=partner, index=index,
                  main=self.main)

    def respond(self, text: str):
        self.busy = True
        self.respond_request = self.engine.request("respond", agent=self.agent_id, text=text,
                                                   on_token=self.token.emit, on_done=self._replied,
                                                   on_error=self._respond_failed)

    def _replied(self, result):
        self.busy = False
        self.replied.emit(result)

    def _respond_failed(self, message):
        self.busy = False
        self.failed.emit("respond", message)

    def cancel(self):
        if self.respond_request is not None:
            self.engine.cancel(self.agent_id, self.respond_request)

    def rewind(self, user_turn: int):
        self._req("rewind", None, turn=user_turn)

    def end_session(self):
        self.end_request = self._req("end_session", self.session_ended.emit)

    def stop_session_end(self):
        """Ask the engine to finish the running session end early (what is done so far is kept)."""
        if self.end_request is not None and self.busy:
            self.engine.cancel(self.agent_id, self.end_request)

    def fetch_memory(self):
        self._req("memory", self.memory_loaded.emit)

    def edit_memory(self, memory_id: str, text: str):
        self._req("edit_memory", self.memory_loaded.emit, memory=memory_id, text=text)

    def delete_memory(self, memory_id: str):
        self._req("delete_memory", self.memory_loaded.emit, memory=memory_id)

    def drop(self):
        if self.created:
            self.engine.request("drop_agent", agent=self.agent_id)
