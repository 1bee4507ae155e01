"""Chat, Compare, Memory and Models pages driven through the real engine worker process, on a tiny
randomly initialised causal LM (saved as a model directory) and the real MiniLM encoder.

One worker serves the whole module (starting it imports torch in the child, ~10 s here).
"""

import os
import signal
from pathlib import Path

import pytest

from tiny_engine import engine_env, environment

pytest.importorskip("torch")
pytestmark = [pytest.mark.gui, pytest.mark.slow]
WAIT = 180_000  # ms; the 2-core build machine is shared


@pytest.fixture(scope="module")
def ctx(qapp, tmp_path_factory):
    root = tmp_path_factory.mktemp("engine-gui")
    env = engine_env(Path(os.environ.get("MEMLAB_TEST_MODELS", root)))
    with environment(env):
        from desktop.context import AppContext

        c = AppContext(settings_path=root / "settings.ini", data_dir=root / "data")
        assert c.engine_available
        yield c
        c.shutdown()


def _idle(page):
    return lambda: page.agent is not None and page.agent.created and not page.agent.busy and page.streaming is None


@pytest.fixture(scope="module")
def chat(ctx, qapp):
    from desktop.pages.chat import ChatPage

    page = ChatPage(ctx)
    # the random tiny model supports no memory by its own likelihood: EMMA's grounding check is off here
    page.agent_options = {"emma": {"grounding": "none"}}
    page.resize(1000, 700)
    page.show()
    yield page
    page.close()


def test_mixed_chat_streams_stores_memories_and_exports(chat, ctx, qtbot, tmp_path):
    tokens = []
    chat.new_chat("emma", {"name": "Alice", "job": "teacher"}, {"name": "Bob", "job": "student"})
    chat.agent.token.connect(tokens.append)
    qtbot.waitUntil(_idle(chat), timeout=WAIT)
    chat.send("I just adopted a cat called Milo.")
    qtbot.waitUntil(_idle(chat), timeout=WAIT)
    bot = chat.doc.current.turns[-1]
    assert bot.role == "bot" and not bot.error and tokens, "the reply streamed token by token"
    assert bot.text == "".join(tokens).strip()
    assert ctx.engine_info.get("lm", {}).get("plan", {}).get("device") == "cpu"

    chat.new_session({"name": "Carol", "job": "nurse"})
    qtbot.waitUntil(lambda: len(chat.doc.sessions) == 2 and _idle(chat)(), timeout=WAIT)
    first = chat.doc.sessions[0]
    assert first.ended and first.stored.get("memories"), "ending the session stored memories"
    assert "Session ended" in chat.transcript.toPlainText()
    assert any(m["about"] == "Bob" for m in chat.doc.memory["memories"])

    chat.send("Have you heard from Bob lately?")
    qtbot.waitUntil(_idle(chat), timeout=WAIT)
    given = chat.doc.current.turns[-1].memories
    assert given and {m["id"] for m in given} <= {m["id"] for m in chat.doc.memory["memories"]}
    assert "memories given" in chat.transcript.toPlainText()

    chat.new_session({"name": "Bob", "job": "student"})
    qtbot.waitUntil(lambda: len(chat.doc.sessions) == 3 and _idle(chat)(), timeout=WAIT)
    assert chat.session_label.text().count("Session 3") == 1

    saved = ctx.data_dir / "chats" / f"{chat.doc.id}.json"
    assert saved.exists()
    from engine.data.episode_format import read_episodes

    chat.export(tmp_path / "chat.json", "json")
    (ep,) = read_episodes(tmp_path / "chat.json")
    assert [s.partner.name for s in ep.sessions] == ["Bob", "Carol", "Bob"] and ep.memories
    chat.export(tmp_path / "chat.md", "md")
    assert "## Session 2 with Carol (nurse)" in (tmp_path / "chat.md").read_text()


def test_a_saved_chat_reopens_and_continues_with_its_memory(chat, ctx, qtbot, tmp_path):
    import json

    from desktop.pages.chat import ChatPage

    data = json.loads((ctx.data_dir / "chats" / f"{chat.doc.id}.json").read_text())
    data["id"] = chat.doc.id + "-reopened"  # its own engine agent, so the module's chat is untouched
    saved = tmp_path / "chat.json"
    saved.write_text(json.dumps(data))
    other = ChatPage(ctx)
    other.agent_options = chat.agent_options
    qtbot.addWidget(other)
    doc = other.open_chat(saved)
    assert [s.partner["name"] for s in doc.sessions] == ["Bob", "Carol", "Bob"]
    assert "Session 2 — Alice with Carol (nurse)" in other.transcript.toPlainText()
    qtbot.waitUntil(_idle(other), timeout=WAIT)
    ctx.engine.request("memory", agent=doc.id, on_done=lambda r: setattr(other, "_mem", r))
    qtbot.waitUntil(lambda: hasattr(other, "_mem"), timeout=WAIT)
    assert {m["id"] for m in other._mem["memories"]} == {m["id"] for m in chat.doc.memory["memories"]}
    other.agent.drop()


def test_regenerate_and_edit_keep_the_old_turns_as_branches(chat, qtbot):
    chat.send("Milo knocked over my coffee this morning.")
    qtbot.waitUntil(_idle(chat), timeout=WAIT)
    session = chat.doc.current
    assert chat.regen_button.isEnabled()
    chat.regenerate()
    qtbot.waitUntil(_idle(chat), timeout=WAIT)
    assert len(session.branches) == 1 and len(session.turns) == 2
    chat.edit_turn(0, "Milo broke a vase this morning.")
    qtbot.waitUntil(_idle(chat), timeout=WAIT)
    assert len(session.branches) == 2
    assert session.turns[0].text == "Milo broke a vase this morning."
    assert session.branches[1]["turns"][0]["text"] == "Milo knocked over my coffee this morning."


def test_stop_cancels_the_reply(chat, qtbot):
    chat.send("Tell me a very long story about cats.")
    chat.stop()  # before the first token: the worker cancels the request when it starts
    qtbot.waitUntil(_idle(chat), timeout=WAIT)
    last = chat.doc.current.turns[-1]
    assert last.cancelled and "(stopped)" in chat.transcript.toPlainText()


def test_a_killed_worker_ends_the_turn_with_a_message_and_restarts(chat, ctx, qtbot):
    old_pid = ctx.engine.pid
    chat.send("Are you still there?")
    os.kill(old_pid, signal.SIGKILL)
    qtbot.waitUntil(_idle(chat), timeout=WAIT)
    failed = chat.doc.current.turns[-1]
    assert "SIGKILL" in failed.error and chat.note.isVisible()
    qtbot.waitUntil(lambda: ctx.engine.pid not in (None, old_pid) and ctx.engine.state == "ready", timeout=WAIT)
    chat.send("Hello again.")
    qtbot.waitUntil(_idle(chat), timeout=WAIT)
    assert not chat.doc.current.turns[-1].error and chat.doc.current.turns[-1].text


def test_memory_page_edits_and_deletes_through_the_engine(chat, ctx, qtbot):
    from desktop.pages.memory import MemoryPage

    page = MemoryPage(ctx)
    qtbot.addWidget(page)
    chat.open_memory()
    assert page.snapshot.agent == chat.doc.id and page.table.rowCount() >= 1
    mid = page.table.item(0, 0).text()
    page.select(mid)
    assert page.edit_button.isEnabled()
    page.edit_memory(mid, "Bob's cat is called Milo.")
    qtbot.waitUntil(lambda: page.snapshot.by_id()[mid].text == "Bob's cat is called Milo.", timeout=WAIT)
    assert [v["action"] for v in page.snapshot.by_id()[mid].versions] == ["created", "edit"]
    assert "Versions" in page.inspector.toPlainText()
    assert any(m["text"] == "Bob's cat is called Milo." for m in chat.doc.memory["memories"])
    n = len(page.snapshot.live())
    page.delete_memory(mid)
    qtbot.waitUntil(lambda: len(page.snapshot.live()) == n - 1, timeout=WAIT)


def test_compare_blind_vote_reveals_names_and_updates_the_leaderboard(ctx, qtbot):
    from desktop import compare_store
    from desktop.pages.compare import ComparePage

    page = ComparePage(ctx)
    qtbot.addWidget(page)
    page.start(["emma", "summary"], {"name": "Alice", "job": "teacher"}, {"name": "Bob", "job": "student"},
               blind=True, seed=3)
    assert [p.title() for p in page.panels] == ["A", "B"]
    qtbot.waitUntil(lambda: page.send_button.isEnabled(), timeout=WAIT)
    page.send("My sister moved to Lisbon.")
    qtbot.waitUntil(lambda: not page._waiting, timeout=WAIT)
    assert all(p.turns[-1]["role"] == "bot" for p in page.panels)
    page.new_session({"name": "Carol", "job": "nurse"})
    qtbot.waitUntil(lambda: page.session_index == 1 and not page._waiting, timeout=WAIT)
    page.send("Where does Bob's sister live now?")
    qtbot.waitUntil(lambda: not page._waiting, timeout=WAIT)
    assert all("memories given" not in p.view.toPlainText() for p in page.panels), "blind: nothing gives a system away"
    record = page.vote("left")
    assert record["blind"] is True and record["left"] == page.panels[0].system
    assert len(record["transcript"]["left"]) == 4 and record["partners"][1]["name"] == "Carol"
    assert "—" in page.panels[0].title()  # revealed
    assert len(compare_store.read_votes(ctx.data_dir)) == 1
    assert page.board.rowCount() == 2
    assert page.board.item(0, 2).text().startswith("needs ")  # one vote: no interval pretending certainty
    assert page.pairs.rowCount() == 1 and page.pairs.item(0, 1).text() == "1"
    log = page.memory_log.toPlainText()  # revealed after the vote: stored and retrieved per system
    assert "End of session 1" in log and "Session 2" in log
    assert set(record["memory"]) == {p.system for p in page.panels}


def test_models_page_reports_device_and_disables_4bit_without_cuda(ctx, qtbot):
    from desktop.pages.models import ModelsPage

    page = ModelsPage(ctx)
    qtbot.addWidget(page)
    page.refresh()
    qtbot.waitUntil(lambda: bool(page.info), timeout=WAIT)
    assert page.info["cuda"] is False and not page.four_bit.isEnabled()
    assert "cpu float32" in page.summary.text() and "no CUDA" in page.summary.text()
    assert "Embedded default" in page.details.toPlainText()


def test_applying_model_paths_restarts_the_worker_and_loads_them(ctx, qtbot):
    from desktop.pages.models import ModelsPage

    page = ModelsPage(ctx)
    qtbot.addWidget(page)
    old_pid = ctx.engine.pid
    page.fields["lm"].setText(os.environ["MEMLAB_LM"])
    page.apply_and_load()
    qtbot.waitUntil(lambda: ctx.engine.pid != old_pid and (page.info.get("lm") or {}).get("name") == os.environ["MEMLAB_LM"],
                    timeout=WAIT)
    bar = page.bars["load"]
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=WAIT)
    assert ctx.settings.value("models/lm") == os.environ["MEMLAB_LM"]
    assert "Generator" in page.details.toPlainText()
