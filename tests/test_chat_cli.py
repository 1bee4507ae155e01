"""`memlab chat` end to end on a tiny random causal model saved to disk and the real MiniLM encoder."""

import json

import pytest

from engine.data.model import Speaker
from engine.memory import MemoryStore
from tiny import minilm, tiny_lm

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
    code, out, err = _chat(capsys, "--agent", "emma", "--main", "Alice:teacher", "--lm", str(lm_dir),
                           "--script", str(script), "--json", "--max-new-tokens", "5", "--greedy")
    assert code == 0, err
    doc = json.loads(out)
    assert "generator:" in err and "cpu" in err  # device stated
    assert [s["partner"]["name"] for s in doc["sessions"]] == ["Bob", "Carol"]
    s1, s2 = doc["sessions"]
    assert [t["speaker"] for t in s1["turns"]] == ["Bob", "Alice"]
    stored = {m["id"]: m for m in s1["stored"]["memories"]}
    assert stored and all(m["text"].endswith("from first session)") for m in stored.values())
    given = s2["turns"][1]["memories"]
    assert given and given[0]["id"] in stored  # session 2's bot turn got memories formed in session 1
    assert s2["stored"] is not None and doc["memory"]["memories"]


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
    chat.index = 0
    saved = tmp_path / "saved.json"
    chat.save(saved)
    script = _script(tmp_path, "/partner Carol:nurse\nDid Bob ever tell you the name of the kitten he adopted?\n")
    code, out, err = _chat(capsys, "--agent", "emma", "--lm", str(lm_dir), "--resume", str(saved),
                           "--script", str(script), "--json", "--max-new-tokens", "4", "--greedy")
    assert code == 0, err
    doc = json.loads(out)
    bot = doc["sessions"][-1]["turns"][1]
    assert doc["sessions"][-1]["index"] == 1
    assert bot["memories"][0] == {"id": fact.id, "about": "Bob", "session": 0, "text": FACT}


def test_interactive_commands_and_save(tmp_path, capsys, lm_dir, monkeypatch):
    lines = iter(["/partner Bob:vet", "Hello Alice!", "/memory", f"/save {tmp_path / 'c.json'}",
                  "/bogus", "/partner Carol:nurse", "/memory", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    code, out, err = _chat(capsys, "--agent", "rag", "--lm", str(lm_dir), "--max-new-tokens", "3", "--greedy")
    assert code == 0
    assert "(no memories stored)" in out and "unknown command '/bogus'" in out
    assert "session ended: 2 memories" in out and "Bob: Hello Alice! (first session)" in out
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["format"] == "memlab-chat/1" and saved["open"] and saved["log"][0]["turns"][0]["text"] == "Hello Alice!"


def test_bad_script_line_names_file_and_line(tmp_path, capsys, lm_dir):
    script = _script(tmp_path, "/partner :vet\nhi\n")
    code, out, err = _chat(capsys, "--agent", "no-memory", "--lm", str(lm_dir), "--script", str(script), "--json")
    assert code == 2 and f"{script}, line 1" in err and "no name" in err
    script = _script(tmp_path, "hello before any partner\n")
    code, out, err = _chat(capsys, "--agent", "no-memory", "--lm", str(lm_dir), "--script", str(script))
    assert code == 2 and "line 1" in err and "/partner" in err
