"""The UI side of the engine worker: send requests, pump replies, restart after a crash.

The worker (:mod:`desktop.engine_worker`) is a separate process, so model code
never runs in the UI process and a native crash or out-of-memory kill takes down only the worker.
The worker is a fresh ``python -m desktop.engine_worker`` process joined by a socket pair; replies
are pumped by a ``QSocketNotifier`` on the socket, never by a blocking ``recv``; each pump drains at most a few milliseconds of messages so
a fast token stream cannot stall the UI thread.

After a crash every pending request fails with a message that says what happened, the worker is
started again, and the agents are re-created from the last state the client saw (the state after
the last session end or load), so the user can carry on.

The engine may also run on another machine (:mod:`desktop.remote_engine`, ``memlab engine serve``):
:meth:`EngineClient.connect_remote` speaks the same protocol over an authenticated TCP connection. A
dropped connection ends the turn with a message, like a crash, and the client reconnects (a few tries,
waiting longer each time) and re-creates its agents there.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from PySide6.QtCore import QObject, QSocketNotifier, QTimer, Signal

from engine import protocol

PUMP_BUDGET_S = 0.008  # at most this long per pump, then yield back to the event loop
MAX_RESTARTS = 3  # within RESTART_WINDOW_S; more means something is wrong with the models
RESTART_WINDOW_S = 120.0
RECONNECT_DELAYS_MS = (500, 2000, 5000, 10000)  # a dropped remote engine: tries after these waits, then give up


@dataclass
class _Pending:
    op: str
    on_done: Callable | None = None
    on_error: Callable | None = None
    on_token: Callable | None = None
    on_progress: Callable | None = None
    fields: dict = field(default_factory=dict)


def _exit_text(code) -> str:
    if code is None:
        return "the engine worker stopped"
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed — often the system ran out of memory)" if name == "SIGKILL" else ""
        return f"the engine worker was stopped by {name}{hint}"
    return f"the engine worker exited with code {code}"


class EngineClient(QObject):
    """Talks to one engine worker process in the messages of :mod:`engine.protocol`."""

    state_changed = Signal(str, str)  # state ("stopped"|"starting"|"ready"|"busy"|"restarting"|"failed"), detail
    info_changed = Signal(dict)
    crashed = Signal(str)  # what happened, for the status bar
    request_failed = Signal(str, str)  # op, message — every failed request (pages also get their callback)

    def __init__(self, config: dict, parent: QObject | None = None):
        super().__init__(parent)
        self.config = dict(config)
        self._proc = None
        self._conn = None
        self._notifier = None
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._agents: dict[str, dict] = {}  # agent → {"create": msg, "session": msg, "state": dict}
        self._crash_times: list[float] = []
        self._closing = False
        self.state = "stopped"
        self.remote: dict | None = None  # {"host", "port", "token"} when the engine runs elsewhere
        self._remote_pid: int | None = None
        self.last_error = ""
        self.last_pump_s = 0.0  # the longest single pump so far (bench/ui.py reads it)
        self._watchdog = QTimer(self)
        self._watchdog.setInterval(250)
        self._watchdog.timeout.connect(self._check_alive)




    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        if self.remote is not None:
            return self._remote_pid if self._conn is not None else None
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        if self.remote is not None:
            return self._conn is not None
        return self._proc is not None and self._proc.poll() is None

    def where(self) -> str:
        """Where the engine runs: ``"this machine"`` or the remote engine's URL."""
        if self.remote is None:
            return "this machine"
        from desktop.remote_engine import engine_url

        return engine_url(self.remote["host"], self.remote["port"])

    def connect_remote(self, url: str, token: str) -> bool:
        """Use the engine served at ``url`` (``memlab engine serve``) instead of a local worker; the agents
        the app has are re-created there. False (and state ``failed`` with the reason) when it cannot connect."""
        from desktop.remote_engine import parse_engine_url

        try:
            host, port = parse_engine_url(url)
        except ValueError as e:
            self.last_error = str(e)
            self._set_state("failed", self.last_error)
            return False
        self._fail_pending(f"the app switched to the engine at {url}")
        # set before the old engine stops: a page answering the "stopped" state with a request must reach
        # the new engine, not start another local worker
        self.remote = {"host": host, "port": port, "token": str(token).strip()}
        self.shutdown()
        if not self.start():
            return False
        self._replay()
        return True

    def use_local(self) -> None:
        """Back to a worker process on this machine (the agents are re-created there)."""
        if self.remote is None:
            return
        self._fail_pending("the app switched to the engine on this machine")
        self.remote = None  # before the remote connection closes (see connect_remote)
        self.shutdown()
        self._restart_and_replay()

    def _start_remote(self) -> bool:
        from desktop.remote_engine import EngineConnectError, connect

        self._set_state("starting", f"connecting to the engine at {self.where()}")
        try:
            self._conn = connect(self.remote["host"], self.remote["port"], self.remote["token"])
        except EngineConnectError as e:
            self._conn = None
            self.last_error = str(e)
            self._set_state("failed", self.last_error)
            return False
        self._notifier = QSocketNotifier(self._conn.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._pump)
        return True

    def start(self) -> bool:
        """Start the worker: ``python -m desktop.engine_worker FD`` with one end of a socket pair.

        A fresh interpreter (not ``multiprocessing``'s spawn, which re-imports the parent's main
        script) that inherits only the socket; the pipe speaks ``multiprocessing.connection``.
        """
        if self.is_running():
            return True
        if self.remote is not None:
            return self._start_remote()
        import json
        import os
        import socket
        import subprocess
        from multiprocessing.connection import Connection

        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ, MEMLAB_WORKER_CONFIG=json.dumps(self.config))
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen([sys.executable, "-m", "desktop.engine_worker", str(child_sock.fileno())],
                                      pass_fds=[child_sock.fileno()], env=env, stdin=subprocess.DEVNULL)
        child_sock.close()
        self._conn = Connection(parent_sock.detach())
        self._notifier = QSocketNotifier(self._conn.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._pump)
        self._watchdog.start()
        self._set_state("starting", "starting the engine worker")
        return True

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop the worker (asks nicely, then terminates)."""
        self._closing = True
        self._teardown_pipe(send_shutdown=True)
        if self._proc is not None:
            import subprocess

            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                try:
                    self._proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        self._proc = None
        self._set_state("stopped", "")
        self._closing = False

    def set_config(self, config: dict) -> None:
        """New model paths: restart the worker and re-create the agents on the new models."""
        self.config = dict(config)
        if self._proc is None:
            return
        self._fail_pending("the models were changed; the engine worker restarted")
        self.shutdown()
        self._restart_and_replay()

    def _teardown_pipe(self, send_shutdown=False):
        self._watchdog.stop()

        if self._notifier is not None:
            self._notifier.setEnabled(False)
            self._notifier.deleteLater()
            self._notifier = None
        if self._conn is not None:
            if send_shutdown:
                try:
                    self._conn.send(protocol.Shutdown().to_wire())
                except (OSError, ValueError):
                    pass
            self._conn.close()
            self._conn = None

    # -- requests ----------------------------------------------------------------------------
    def request(self, op: str, *, on_done=None, on_error=None, on_token=None, on_progress=None, **fields) -> int:
        """Send one request; the callbacks run on the UI thread as replies arrive. Returns its id."""
        if not self.is_running():
            self.start()
        rid = self._next_id
        self._next_id += 1
        if not self.is_running():  # a remote engine that cannot be reached: say so at once
            self._remember(op, fields)
            if on_error:
                QTimer.singleShot(0, lambda: on_error(self.last_error or "the engine is not reachable"))
            return rid
        self._pending[rid] = _Pending(op, on_done, on_error, on_token, on_progress, dict(fields))
        self._remember(op, fields)
        self._send(protocol.request(op, rid, **fields).to_wire())
        self._set_state("busy", op)
        return rid

    def cancel(self, agent: str, request: int) -> None:
        """Stop the ``respond`` request ``request`` of ``agent`` at its next token (or before it starts)."""
        if self.is_running() and request in self._pending:
            self._send(protocol.Cancel(agent=agent, request=request).to_wire())

    def busy(self) -> bool:
        return bool(self._pending)

    def known_agent_state(self, agent: str) -> dict | None:
        return (self._agents.get(agent) or {}).get("state")

    def _send(self, msg: dict) -> None:
        try:
            self._conn.send(msg)
        except (OSError, ValueError, AttributeError):
            QTimer.singleShot(0, self._check_alive)

    def _remember(self, op, fields):
        """Keep what is needed to rebuild an agent after a restart."""
        name = fields.get("agent")
        if op == "create_agent":
            self._agents[name] = {"create": dict(fields), "session": None, "state": None, "turns": []}
        elif op == "drop_agent":
            self._agents.pop(name, None)
        elif op == "start_session" and name in self._agents:
            self._agents[name]["session"] = dict(fields)
            self._agents[name]["turns"] = []
        elif op == "rewind" and name in self._agents:
            log = self._agents[name]["turns"]
            users = [i for i, t in enumerate(log) if t["role"] == "user"]
            k = int(fields.get("turn", 0))
            del log[users[k] if k < len(users) else len(log):]
        elif op == "load_state" and name in self._agents:
            self._agents[name]["state"] = fields.get("state")

    # -- replies -----------------------------------------------------------------------------
    def _pump(self, *_):
        if self._conn is None:
            return
        start = time.perf_counter()
        try:
            while self._conn is not None and self._conn.poll():
                msg = self._conn.recv()
                self._dispatch(msg)
                if time.perf_counter() - start > PUMP_BUDGET_S:
                    if self._notifier is None:
                        break
                    # more may be waiting: the notifier fires again only on new data, so come back soon
                    QTimer.singleShot(0, self._pump)
                    break
        except (EOFError, OSError):
            self._on_worker_lost()
        self.last_pump_s = max(self.last_pump_s, time.perf_counter() - start)

    def _dispatch(self, msg: dict) -> None:
        kind = msg.get("kind")
        if kind == "hello":
            if msg.get("protocol") != protocol.PROTOCOL:
                self._set_state("failed", f"the engine worker speaks {msg.get('protocol')!r}, this app "
                                          f"{protocol.PROTOCOL!r}; reinstall MemLab so both are the same version")
                return
            self._remote_pid = msg.get("pid")
            where = "" if self.remote is None else f" at {self.where()}"
            self._set_state("busy" if self._pending else "ready", f"engine worker pid {msg.get('pid')}{where}")
            return
        p = self._pending.get(msg.get("id"))
        if kind == "token":
            if p and p.on_token:
                p.on_token(msg.get("text", ""))
            return
        if kind == "progress":
            if p and p.on_progress:
                p.on_progress(msg.get("label", ""), msg.get("done", 0.0), msg.get("total", 0.0))
            return
        self._pending.pop(msg.get("id"), None)
        if kind == "result":
            result = msg.get("result")
            if msg.get("op") in ("info", "load", "set_config") and isinstance(result, dict):
                self.info_changed.emit(result)
            elif isinstance(result, dict) and isinstance(result.get("info"), dict):
                self.info_changed.emit(result["info"])
            if msg.get("op") == "respond" and p and isinstance(result, dict) and not result.get("cancelled"):
                rec = self._agents.get(p.fields.get("agent"))
                if rec is not None and result.get("reply"):
                    rec["turns"] += [{"role": "user", "text": p.fields.get("text", "")},
                                     {"role": "bot", "text": result["reply"], "memory_ids": result.get("memory_ids", [])}]
            if msg.get("op") == "end_session" and p and isinstance(result, dict):
                name = p.fields.get("agent")
                if name in self._agents:
                    self._agents[name]["state"] = result.get("state")
                    self._agents[name]["session"] = None
                    self._agents[name]["turns"] = []
            if p and p.on_done:
                p.on_done(result)
        elif kind == "error":
            self.request_failed.emit(str(msg.get("op")), msg.get("message", "engine error"))
            if p and p.on_error:
                p.on_error(msg.get("message", "engine error"))
        if not self._pending and self.state == "busy":
            self._set_state("ready", "")

    # -- crashes -----------------------------------------------------------------------------
    def _check_alive(self):
        if self._proc is not None and self._proc.poll() is not None and not self._closing:
            self._pump()  # read what it managed to say before dying
            self._on_worker_lost()

    def _on_worker_lost(self):
        if self.remote is not None:
            self._on_connection_lost()
            return
        if self._closing or self._proc is None:
            return
        import subprocess

        try:
            self._proc.wait(0.5)
        except subprocess.TimeoutExpired:  # the pipe broke but the process lingers: end it
            self._proc.kill()
            self._proc.wait()
        what = _exit_text(self._proc.returncode)
        self._teardown_pipe()
        self._proc = None
        self._fail_pending(f"{what}; the turn was stopped and the engine is restarting")
        now = time.monotonic()
        self._crash_times = [t for t in self._crash_times if now - t < RESTART_WINDOW_S] + [now]
        if len(self._crash_times) > MAX_RESTARTS:
            self._set_state("failed", f"{what}; it crashed {len(self._crash_times)} times in "
                                      f"{RESTART_WINDOW_S:.0f} s, so it was not restarted (check the Models page)")
            self.crashed.emit(self.state)
            return
        self.crashed.emit(what)
        self._set_state("restarting", what)
        self._restart_and_replay()

    def _fail_pending(self, message: str):
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if p.on_error:
                p.on_error(message)

    def _on_connection_lost(self):
        if self._closing or self._conn is None:
            return
        self._teardown_pipe()
        what = f"the connection to the engine at {self.where()} was lost"
        self._fail_pending(f"{what}; the turn was stopped and the app is reconnecting")
        self.crashed.emit(what)
        self._set_state("restarting", what)
        self._reconnect(0)

    def _reconnect(self, attempt: int):
        if self.remote is None or self.is_running():
            return
        if self.start():
            self._replay()
            return
        if attempt >= len(RECONNECT_DELAYS_MS):
            self._set_state("failed", f"{self.last_error}; gave up reconnecting — press Connect on the Models page")
            return
        self._set_state("restarting", f"{self.last_error}; trying again in {RECONNECT_DELAYS_MS[attempt] / 1000:g} s")
        QTimer.singleShot(RECONNECT_DELAYS_MS[attempt], lambda: self._reconnect(attempt + 1))

    def _restart_and_replay(self):
        if self.start():
            self._replay()

    def _replay(self):
        for name, rec in list(self._agents.items()):
            self._send_quiet("create_agent", rec["create"])
            if rec.get("state") is not None:
                self._send_quiet("load_state", {"agent": name, "state": rec["state"]})
            if rec.get("session") is not None:
                self._send_quiet("start_session", rec["session"])
                if rec.get("turns"):
                    main = (rec["create"].get("main") or {}).get("name", "")
                    partner = (rec["session"].get("partner") or {}).get("name", "")
                    turns = [{"speaker": main if t["role"] == "bot" else partner, "text": t["text"],
                              "memory_ids": t.get("memory_ids", [])} for t in rec["turns"]]
                    self._send_quiet("restore_turns", {"agent": name, "turns": turns})

    def _send_quiet(self, op, fields):
        rid = self._next_id
        self._next_id += 1
        self._pending[rid] = _Pending(op, fields=dict(fields))
        self._send(protocol.request(op, rid, **fields).to_wire())

    def _set_state(self, state: str, detail: str) -> None:
        if state != self.state or detail:
            self.state = state
            self.state_changed.emit(state, detail)
