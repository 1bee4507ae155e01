"""The app on a remote engine (issue 14 §2): `memlab engine serve` in its own process, the app's
engine client over TCP with the server's token, unauthenticated peers refused, two app connections
with their own agents, a dropped connection ending the turn and reconnecting."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_engine import engine_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WAIT = 180_000


def test_engine_urls_and_token_file(tmp_path):
    from desktop.remote_engine import engine_url, load_or_create_token, parse_engine_url

    assert parse_engine_url("memlab://10.0.0.2:9000") == ("10.0.0.2", 9000)
    assert parse_engine_url("localhost") == ("localhost", 8765)
    assert parse_engine_url("tcp://[::1]:81/") == ("::1", 81)
    assert engine_url("::1", 81) == "memlab://[::1]:81"
    for bad in ("", "host:http", "host:70000"):
        with pytest.raises(ValueError):
            parse_engine_url(bad)
    path = tmp_path / "d" / "engine-token"
    token = load_or_create_token(path)
    assert len(token) >= 32 and load_or_create_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("remote-engine")
    env_models = engine_env(Path(os.environ.get("MEMLAB_TEST_MODELS", root)))
    token_file = root / "token"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MEMLAB_HOME=str(root / "home"))
    env.pop("MEMLAB_ENGINE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "desktop.cli", "engine", "serve", "--port", "0",
                             "--token-file", str(token_file), "--lm", env_models["MEMLAB_LM"],
                             "--encoder", env_models["MEMLAB_ENCODER"]],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert "listening on memlab://127.0.0.1:" in first, proc.stderr.read()
    url = first.split()[-1]
    token_line = proc.stdout.readline()
    token = token_file.read_text().strip()
    assert token in token_line
    yield {"url": url, "token": token, "proc": proc, "port": int(url.rsplit(":", 1)[1])}
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def test_unauthenticated_connections_are_refused(server):
    from desktop.remote_engine import EngineConnectError, connect

    with socket.create_connection(("127.0.0.1", server["port"]), timeout=30) as raw:
        raw.recv(256)                                   # the server's challenge: nothing else comes
        raw.sendall(b"\x00\x00\x00\x05hello")           # a wrong answer
        raw.settimeout(30)
        said = b""
        while chunk := raw.recv(1024):                  # the server says #FAILURE and hangs up
            said += chunk
        assert b"#FAILURE" in said and b"hello" not in said.lower()
    with pytest.raises(EngineConnectError, match="refused the token"):
        connect("127.0.0.1", server["port"], "not-the-token")


def _wait_done(qtbot, box):
    qtbot.waitUntil(lambda: "done" in box or "error" in box, timeout=WAIT)
    return box


def _call(qtbot, client, op, **fields):
    box = {}
    client.request(op, on_done=lambda r: box.setdefault("done", r), on_error=lambda e: box.setdefault("error", e),
                   on_token=lambda t: box.setdefault("tokens", []).append(t), **fields)
    return _wait_done(qtbot, box)


@pytest.mark.slow
@pytest.mark.gui
def test_two_apps_share_one_engine_and_a_dropped_connection_reconnects(server, qtbot, qapp):
    from desktop.engine_client import EngineClient

    a, b = EngineClient({}), EngineClient({})
    try:
        assert a.connect_remote(server["url"], server["token"]) and b.connect_remote(server["url"], server["token"])
        qtbot.waitUntil(lambda: a.state == "ready" and b.state == "ready", timeout=WAIT)
        assert a.pid != b.pid and a.where() == server["url"]     # one worker per connection
        bob = {"name": "Bob", "job": "student"}
        for client, system in ((a, "no-memory"), (b, "full-history")):
            created = _call(qtbot, client, "create_agent", agent="chat", system=system, main={"name": "Alice"})
            assert created["done"]["system"] == system
            assert _call(qtbot, client, "start_session", agent="chat", partner=bob, index=0).get("done")
        reply = _call(qtbot, a, "respond", agent="chat", text="I adopted a cat called Milo.")
        assert reply["done"]["reply"] and reply["tokens"]          # streamed token by token over TCP
        info_a, info_b = _call(qtbot, a, "info")["done"], _call(qtbot, b, "info")["done"]
        assert info_a["agents"] == ["chat"] == info_b["agents"] and info_a["pid"] != info_b["pid"]
        assert info_a["lm"]["plan"]["device"] == "cpu"

        old = a.pid                                           # the connection drops mid-turn
        box = {}
        a.request("respond", agent="chat", text="Tell me a long story.", on_done=lambda r: box.setdefault("done", r),
                  on_error=lambda e: box.setdefault("error", e))
        os.kill(old, signal.SIGKILL)
        _wait_done(qtbot, box)
        assert "connection to the engine at" in box.get("error", "") and "reconnecting" in box["error"]
        qtbot.waitUntil(lambda: a.state == "ready" and a.pid not in (None, old), timeout=WAIT)
        again = _call(qtbot, a, "respond", agent="chat", text="Are you still there?")   # agent re-created
        assert again.get("done", {}).get("reply"), again
        assert _call(qtbot, b, "respond", agent="chat", text="Hi!").get("done")  # the other app never noticed
    finally:
        a.shutdown()
        b.shutdown()


@pytest.mark.slow
@pytest.mark.gui
def test_models_page_connects_by_url_and_token_and_says_where_the_engine_runs(server, qtbot, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from study_helpers import make_ctx
    from desktop.pages.models import ModelsPage

    ctx = make_ctx(tmp_path)
    page = ModelsPage(ctx)
    qtbot.addWidget(page)
    try:
        assert not page.connect_remote(server["url"], "wrong-token")
        assert "refused the token" in page.summary.text()
        assert page.connect_remote(server["url"], server["token"])
        qtbot.waitUntil(lambda: "Remote engine" in page.where_label.text(), timeout=WAIT)
        assert server["url"] in page.where_label.text() and ctx.settings.value("engine/remote_url") == server["url"]
        page.use_local()
        qtbot.waitUntil(lambda: "This machine" in page.where_label.text(), timeout=WAIT)
        assert ctx.engine.remote is None
    finally:
        ctx.shutdown()
