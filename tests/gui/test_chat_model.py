"""The chat document: branches kept on edit, memlab-episode/1 export that reads back, Markdown."""

from engine.data.episode_format import read_episodes, write_episodes

from desktop import chat_store
from engine.chat.document import ChatDocument, ChatTurn


def _chat():
    doc = ChatDocument("emma", {"name": "Alice", "job": "teacher"})
    s0 = doc.new_session({"name": "Bob", "job": "student"})
    s0.turns += [ChatTurn("user", "I adopted a cat called Milo."), ChatTurn("bot", "How lovely! How old is Milo?")]
    s0.ended = True
    s0.stored = {"memories": [{"id": "m0", "about": "Bob", "text": "Bob adopted a cat called Milo."}], "links": []}
    doc.memory = {"owner": "Alice", "memories": [
        {"id": "m0", "about": "Bob", "session": 0, "text": "Bob adopted a cat called Milo.", "source_turns": ["s0t0"]},
        {"id": "m1", "about": "Alice", "session": 0, "text": "I asked Bob about his cat.", "source_turns": ["s0t1"]}],
        "links": [{"src": "m1", "dst": "m0", "kind": "related"}]}
    s1 = doc.new_session({"name": "Carol", "job": "nurse"})
    s1.turns += [ChatTurn("user", "Any news from Bob?"),
                 ChatTurn("bot", "He adopted a cat, Milo.", memories=[{"id": "m0", "about": "Bob", "text": "Bob adopted a cat called Milo."}])]
    return doc


def test_episode_export_reads_back_with_tags_memories_and_links(tmp_path):
    doc = _chat()
    path = write_episodes(tmp_path / "chat.json", [doc.to_episode()])
    (ep,) = read_episodes(path)
    assert [s.partner.name for s in ep.sessions] == ["Bob", "Carol"]
    assert ep.sessions[1].turns[1].speaker == "Alice" and ep.sessions[1].turns[1].memory_ids == ["m0"]
    assert ep.sessions[0].turns[0].speaker == "Bob"
    assert {m.id for m in ep.memories} == {"m0", "m1"} and ep.links[0].kind == "related"
    assert ep.source == "live-chat"


def test_editing_a_turn_keeps_the_old_turns_as_a_branch():
    doc = _chat()
    s = doc.current
    s.branch_from(0)
    assert s.turns == [] and len(s.branches) == 1
    assert [t["text"] for t in s.branches[0]["turns"]] == ["Any news from Bob?", "He adopted a cat, Milo."]


def test_save_and_reopen_keeps_everything(tmp_path):
    doc = _chat()
    doc.current.branch_from(1)
    path = chat_store.save_chat(doc, tmp_path)
    again = chat_store.load_chat(path)
    assert again.to_dict() == doc.to_dict()
    assert chat_store.list_chats(tmp_path)[0][1] == "Alice (emma) with Bob, Carol"


def test_markdown_names_sessions_partners_and_memories():
    md = _chat().to_markdown()
    assert "## Session 2 with Carol (nurse)" in md
    assert "**Alice:** He adopted a cat, Milo." in md
    assert "> memory given: Bob adopted a cat called Milo." in md
    assert "- Bob adopted a cat called Milo. *(about Bob)*" in md


def test_a_broken_chat_file_names_the_file(tmp_path):
    bad = tmp_path / "chat-x.json"
    bad.write_text('{"format": "memlab-chat/1", "system": "emma"')
    import pytest

    with pytest.raises(ValueError, match="chat-x.json"):
        chat_store.load_chat(bad)


def test_finished_chats_go_into_the_open_study_as_live_chat_episodes(tmp_path):
    from annotation.db import init_study, open_study

    init_study(tmp_path / "study.db").close()
    doc = _chat()
    first = chat_store.import_into_study(tmp_path / "study.db", doc)
    again = chat_store.import_into_study(tmp_path / "study.db", doc)  # continued after import: a new version
    assert (first, again) == (doc.id, f"{doc.id}-v2")
    with open_study(tmp_path / "study.db") as study:
        assert study.one("SELECT COUNT(*) FROM episodes") == 2
        assert study.one("SELECT COUNT(*) FROM turns") == 8
