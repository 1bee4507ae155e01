"""`memlab chat` end to end on a tiny random causal model saved to disk and the real MiniLM encoder."""

import json
from pathlib import Path

import pytest

from engine.data.model import Speaker
from engine.memory import MemoryStore
from tiny import minilm, tiny_lm

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FACT = "Bob adopted a kitten named Tom. (about Bob, from first session)"


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-causal")
    lm = tiny_lm("llama", tokenizer_kind="wordpiece")
    lm.model.save_pretrained(d)
    lm.tokenizer.save_pretrained(d)
    return d


def _chat(capsys, *argv):
    from engine.chat.cli import register
    import argparse

    parser = argparse.ArgumentParser(prog="memlab")
    register(parser.add_subparsers())
    args = parser.parse_args(["chat", *argv])
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _script(tmp_path, text):
    p = tmp_path / "chat.txt"
    p.write_text(text, encoding="utf-8")
    return p


def test_scripted_two_session_chat_prints_json(tmp_path, capsys, lm_dir):
    script = _script(tmp_path, "# session 1\n/partner Bob:vet\nI adopted a kitten named Tom.\n\n"
                               "/partner Carol:nurse\nWhat did Bob adopt?\n")
    # --set grounding=none: the random tiny model supports no memory by its own likelihood
    code, out, err = _chat(capsys, "--agent", "emma", "--main", "Alice:teacher", "--lm", str(lm_dir),
                           "--script", str(script), "--json", "--max-new-tokens", "5", "--greedy",
                           "--set", "grounding=none")
    assert code == 0, err
    doc = json.loads(out)
    assert "generator:" in err and "cpu" in err  # device stated
    assert "system: EMMA · " in err  # the system and its backbone are named
    assert [s["partner"]["name"] for s in doc["sessions"]] == ["Bob", "Carol"]
    s1, s2 = doc["sessions"]
    assert doc["format"] == "memlab-chat/2" and "agent_state" not in doc
    assert [t["role"] for t in s1["turns"]] == ["user", "bot"] and s1["ended"] and s2["ended"]
    stored = {m["id"]: m for m in s1["stored"]["memories"]}
    assert stored and all(m["text"].endswith("from first session)") for m in stored.values())
    given = s2["turns"][1]["memories"]
    assert given and given[0]["id"] in stored  # session 2's bot turn got memories formed in session 1
    assert given[0]["kind"] == "memory" and s2["stored"] is not None and doc["memory"]["memories"]


def test_resumed_chat_gives_the_stored_fact_to_the_bot(tmp_path, capsys, lm_dir):
    from engine.backbones.loading import load_lm
    from engine.chat.session import ChatSession
    from engine.systems.registry import make_agent

    agent = make_agent("emma", load_lm(str(lm_dir), device="cpu"), minilm())
    store = MemoryStore("Alice")
    fact = store.add("Bob", FACT, 0, ["s0t0"])
    store.add("Alice", "I am grading history exams this week. (about Alice, from first session)", 0)
    store.add("Alice", "I plan to run a marathon in spring. (about Alice, from first session)", 0)
    agent.store = store
    chat = ChatSession(agent, Speaker("Alice", "teacher"))
    chat.doc.new_session({"name": "Bob", "job": "vet"}).ended = True  # the session the memories came from
    saved = tmp_path / "saved.json"
    chat.save(saved)
    script = _script(tmp_path, "/partner Carol:nurse\nDid Bob ever tell you the name of the kitten he adopted?\n")
    code, out, err = _chat(capsys, "--agent", "emma", "--lm", str(lm_dir), "--resume", str(saved),
                           "--script", str(script), "--json", "--max-new-tokens", "4", "--greedy")
    assert code == 0, err
    doc = json.loads(out)
    bot = doc["sessions"][-1]["turns"][1]
    assert doc["sessions"][-1]["index"] == 1
    assert bot["memories"][0] == {"kind": "memory", "id": fact.id, "about": "Bob", "session": 0, "text": FACT}


def test_interactive_commands_and_save(tmp_path, capsys, lm_dir, monkeypatch):
    lines = iter(["/partner Bob:vet", "Hello Alice!", "/memory", f"/save {tmp_path / 'c.json'}",
                  "/bogus", "/partner Carol:nurse", "/memory", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    code, out, err = _chat(capsys, "--agent", "rag", "--lm", str(lm_dir), "--max-new-tokens", "3", "--greedy")
    assert code == 0
    assert "(no memories stored)" in out and "unknown command '/bogus'" in out
    assert "session ended: 2 memories" in out and "Bob: Hello Alice! (first session)" in out
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["format"] == "memlab-chat/2" and saved["sessions"][0]["turns"][0]["text"] == "Hello Alice!"
    assert saved["sessions"][0]["ended"] is False and saved["agent_state"]["format"] == "memlab-agent/1"


def test_both_kinds_of_memlab_chat_1_still_open(capsys, lm_dir):
    """tests/fixtures/chat-v1-*.json were saved by the terminal chat and by the app before memlab-chat/2."""
    from engine.chat.document import ChatDocument

    term = ChatDocument.load(FIXTURES / "chat-v1-terminal.json")
    assert term.system == "emma" and [s.partner["name"] for s in term.sessions] == ["Bob", "Carol"]
    assert term.sessions[0].ended and not term.sessions[1].ended
    assert [t.role for t in term.sessions[0].turns] == ["user", "bot", "user", "bot"]
    assert term.sessions[0].stored["memories"] and term.memory["memories"], "memories come back from the agent state"
    app = ChatDocument.load(FIXTURES / "chat-v1-desktop.json")
    assert app.id == "chat-20261204-030000-beef" and len(app.sessions[0].branches) == 1
    assert app.sessions[1].turns[1].memories[0]["id"] == app.memory["memories"][0]["id"]
    assert app.sessions[1].turns[3].cancelled and not app.sessions[1].ended
    for doc in (term, app):  # and they round-trip as memlab-chat/2
        again = ChatDocument.from_dict(doc.to_dict())
        assert again.to_dict() == doc.to_dict() and doc.to_dict()["format"] == "memlab-chat/2"

    # the terminal chat resumes either of them, continuing the open session
    for name in ("chat-v1-terminal.json", "chat-v1-desktop.json"):
        script = FIXTURES / name
        code, out, err = _chat(capsys, "--agent", "emma", "--lm", str(lm_dir), "--resume", str(script),
                               "--script", str(FIXTURES / "one-line.txt"), "--json", "--max-new-tokens", "3",
                               "--greedy")
        assert code == 0, err
        doc = json.loads(out)
        last = doc["sessions"][-1]
        assert last["partner"]["name"] == "Carol" and last["turns"][-2]["text"] == "Are you there?"
        assert last["ended"] and doc["memory"]["memories"]


def test_a_chat_of_another_system_or_a_broken_file_is_a_clear_error(tmp_path, capsys, lm_dir):
    code, out, err = _chat(capsys, "--agent", "rag", "--lm", str(lm_dir), "--resume",
                           str(FIXTURES / "chat-v1-terminal.json"))
    assert code == 2 and "saved with system 'emma', not 'rag'" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "memlab-chat/2", "system": "emma", "main": {"name": "A"}, "id": "x", "sessions": [{}]}')
    code, out, err = _chat(capsys, "--agent", "emma", "--lm", str(lm_dir), "--resume", str(bad))
    assert code == 2 and "bad.json" in err and "sessions[0].index" in err


def test_bad_script_line_names_file_and_line(tmp_path, capsys, lm_dir):
    script = _script(tmp_path, "/partner :vet\nhi\n")
    code, out, err = _chat(capsys, "--agent", "no-memory", "--lm", str(lm_dir), "--script", str(script), "--json")
    assert code == 2 and f"{script}, line 1" in err and "no name" in err
    script = _script(tmp_path, "hello before any partner\n")
    code, out, err = _chat(capsys, "--agent", "no-memory", "--lm", str(lm_dir), "--script", str(script))
    assert code == 2 and "line 1" in err and "/partner" in err
