"""The engine on another machine: ``memlab engine serve`` and the app's side of the connection.

The server speaks the same typed worker protocol as the local engine worker (:mod:`engine.protocol`,
docs/architecture.md "The engine worker protocol") over TCP. Each accepted connection is authenticated
first and then handed — the socket itself — to a fresh ``python -m desktop.engine_worker FD`` process,
exactly the worker the app starts locally. So every connection (every app instance of a team) has its
own agents and chats, and one crashing or out-of-memory worker takes down only its own connection.
Each connection's worker loads its own copy of the server's models.

Authentication is the standard library's ``multiprocessing.connection`` challenge–response (HMAC over a
random challenge, both directions) with a per-server token as the key: a peer that does not know the
token is refused before any message of it is read, and the token never crosses the wire. The server
binds to ``127.0.0.1`` unless told otherwise; for a remote machine use an SSH tunnel (README, "Past one
machine"). The traffic itself is not encrypted — the tunnel encrypts it.

This module imports no torch and no Qt: the workers do the model work. The command line
(``memlab engine serve``) is :mod:`desktop.engine_serve`.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import AuthenticationError, Connection, answer_challenge, deliver_challenge
from pathlib import Path

DEFAULT_PORT = 8765
HANDSHAKE_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
SCHEME = "memlab://"


class EngineConnectError(ConnectionError):
    """The engine could not be reached or refused us; the message says which and why."""


def parse_engine_url(url: str) -> tuple[str, int]:
    """``memlab://host:port``, ``tcp://host:port``, ``host:port`` or ``host`` (port :data:`DEFAULT_PORT`)."""
    text = str(url).strip()
    for prefix in (SCHEME, "tcp://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    text = text.rstrip("/")
    if not text:
        raise ValueError("an engine URL looks like memlab://127.0.0.1:8765")
    if text.startswith("["):  # [::1]:8765
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or str(DEFAULT_PORT)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, str(DEFAULT_PORT)
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"the port in {url!r} must be a number") from None
    if not 0 < number < 65536:
        raise ValueError(f"the port in {url!r} must be between 1 and 65535")
    return host or "127.0.0.1", number


def engine_url(host: str, port: int) -> str:
    return f"{SCHEME}{'[' + host + ']' if ':' in host else host}:{port}"


def load_or_create_token(path: Path) -> str:
    """The server's token: read from ``path``, or a new random one written there (mode 0600)."""
    path = Path(path)
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


# --- the app's side ---------------------------------------------------------------------------

def connect(host: str, port: int, token: str, timeout: float = CONNECT_TIMEOUT_S) -> Connection:
    """An authenticated connection to ``memlab engine serve`` (the worker's ``Hello`` comes next)."""
    where = engine_url(host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise EngineConnectError(f"cannot reach the engine at {where}: {e.strerror or e}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.settimeout(None)
    timer = threading.Timer(timeout, _shut, (sock,))  # a server that never answers cannot hang us
    timer.start()
    conn = Connection(sock.detach())
    try:
        answer_challenge(conn, token.encode("utf-8"))
        deliver_challenge(conn, token.encode("utf-8"))
    except AuthenticationError:
        conn.close()
        raise EngineConnectError(f"the engine at {where} refused the token (copy it from the server's "
                                 "`memlab engine serve` output or its token file)") from None
    except (OSError, EOFError) as e:
        conn.close()
        raise EngineConnectError(f"the engine at {where} closed the connection during the handshake ({e or 'timeout'})"
                                 ) from None
    finally:
        timer.cancel()
    return conn


def _shut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# --- the server -------------------------------------------------------------------------------

class EngineServer:
    """Accept authenticated connections and give each its own engine worker process."""

    def __init__(self, host: str, port: int, token: str, config: dict | None = None, log=None):
        self.host, self.token, self.config = host, token, dict(config or {})
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.port = self.sock.getsockname()[1]
        self.workers: list[subprocess.Popen] = []
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return engine_url(self.host, self.port)

    def serve_forever(self) -> None:
        self.sock.settimeout(0.5)
        while not self._stop.is_set():
            try:
                client, addr = self.sock.accept()
            except socket.timeout:
                self._reap()
                continue
            except OSError:
                break
            threading.Thread(target=self._handle, args=(client, addr), daemon=True,
                             name=f"memlab-engine-{addr[1]}").start()

    def _handle(self, client: socket.socket, addr) -> None:
        who = f"{addr[0]}:{addr[1]}"
        client.settimeout(None)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        timer = threading.Timer(HANDSHAKE_TIMEOUT_S, _shut, (client,))
        timer.start()
        conn = Connection(os.dup(client.fileno()))
        try:
            deliver_challenge(conn, self.token.encode("utf-8"))
            answer_challenge(conn, self.token.encode("utf-8"))
        except (AuthenticationError, OSError, EOFError) as e:
            self.log(f"refused a connection from {who}: {'wrong or missing token' if isinstance(e, AuthenticationError) else e or 'no handshake'}")
            conn.close()
            client.close()
            return
        finally:
            timer.cancel()
        conn.close()  # the duplicate; the worker gets the socket itself
        fd = client.fileno()
        env = dict(os.environ, MEMLAB_WORKER_CONFIG=json.dumps(self.config))
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.Popen([sys.executable, "-m", "desktop.engine_worker", str(fd)], pass_fds=[fd], env=env,
                                stdin=subprocess.DEVNULL)
        client.close()
        self.workers.append(proc)
        self.log(f"connection from {who}: engine worker pid {proc.pid}")

    def _reap(self) -> None:
        for p in [p for p in self.workers if p.poll() is not None]:
            self.workers.remove(p)
            self.log(f"engine worker pid {p.pid} ended (code {p.returncode})")

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        for p in self.workers:
            if p.poll() is None:
                p.terminate()
        for p in self.workers:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
