"""memlab-episode/1: round trip, the three file shapes, and errors that name file, record and field."""

from __future__ import annotations

import json

import pytest

from engine.data import DataFormatError, read_episodes, write_episodes, episode_to_dict


def _episode(ep_id="ep-1"):
    return {
        "id": ep_id,
        "main": {"name": "Alice", "job": "teacher"},
        "partners": [{"name": "Bob", "job": "student"}, {"name": "Carol", "job": "Alice's sister"}],
        "sessions": [
            {"index": 0, "partner": "Bob", "event": "Bob visits after class", "turns": [
                {"id": "s0t0", "speaker": "Bob", "text": "I start my marathon training tomorrow."},
                {"id": "s0t1", "speaker": "Alice", "text": "Good luck, Bob!"},
            ]},
            {"index": 1, "partner": "Carol", "event": "Sunday lunch", "turns": [
                {"id": "s1t0", "speaker": "Carol", "text": "How are your students?"},
                {"id": "s1t1", "speaker": "Alice", "text": "Bob is training for a marathon.", "memory_ids": ["m1"]},
            ]},
        ],
        "memories": [
            {"id": "m1", "owner": "Alice", "about": "Bob", "text": "Bob is training for a marathon.",
             "session": 0, "source_turns": ["s0t0"]},
            {"id": "m2", "owner": "Alice", "about": "Carol", "text": "Carol asked about my students.",
             "session": 1, "source_turns": ["s1t0"]},
        ],
        "links": [{"src": "m2", "dst": "m1", "kind": "related"}],
    }


def test_round_trip_object_list_and_jsonl(tmp_path):
    p = tmp_path / "one.json"
    p.write_text(json.dumps({"format": "memlab-episode/1", "episodes": [_episode()]}))
    (ep,) = read_episodes(p)
    assert ep.main.name == "Alice" and ep.sessions[1].partner.name == "Carol"
    assert list(ep.tags()) == [("s1t1", "m1")]
    out = write_episodes(tmp_path / "again.json", [ep])
    assert [episode_to_dict(e) for e in read_episodes(out)] == [episode_to_dict(ep)]

    lst = tmp_path / "list.json"
    lst.write_text(json.dumps([_episode("a"), _episode("b")]))
    assert [e.id for e in read_episodes(lst)] == ["a", "b"]

    jl = write_episodes(tmp_path / "eps.jsonl", read_episodes(lst))
    assert len(jl.read_text().splitlines()) == 2
    assert [e.id for e in read_episodes(jl)] == ["a", "b"]


@pytest.mark.parametrize("mutate, record, field", [
    (lambda e: e["sessions"][1].__setitem__("partner", "Dave"), "ep-1", "sessions[1].partner"),
    (lambda e: e["sessions"][0]["turns"][1].__setitem__("speaker", "Carol"), "ep-1", "sessions[0].turns[1].speaker"),
    (lambda e: e["sessions"][0]["turns"][0].__setitem__("text", 5), "ep-1", "sessions[0].turns[0].text"),
    (lambda e: e["memories"][0].__setitem__("session", 7), "ep-1", "memories[0].session"),
    (lambda e: e["memories"][1].__setitem__("owner", "Bob"), "ep-1", "memories[1].owner"),
    (lambda e: e["links"][0].update(src="m1", dst="m2"), "ep-1", "links[0]"),
    (lambda e: e["links"][0].__setitem__("kind", "friend"), "ep-1", "links[0].kind"),
    (lambda e: e["sessions"][1]["turns"][1].__setitem__("memory_ids", ["nope"]), "ep-1", "sessions[1].turns[1].memory_ids[0]"),
    (lambda e: e.pop("main"), 0, "main"),
])
def test_errors_name_file_record_and_field(tmp_path, mutate, record, field):
    ep = _episode()
    mutate(ep)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps([ep]))
    with pytest.raises(DataFormatError) as err:
        read_episodes(p)
    e = err.value
    assert e.file == str(p) and e.field == field
    assert str(record) in str(e.record)
    assert str(p) in str(e) and field in str(e)


def test_malformed_json_wrong_encoding_and_bad_jsonl_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('[{"id": "x",')
    with pytest.raises(DataFormatError, match="malformed JSON at line 1"):
        read_episodes(p)
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"id": "café"}]'.encode("latin-1"))
    with pytest.raises(DataFormatError, match="not UTF-8"):
        read_episodes(latin)
    jl = tmp_path / "eps.jsonl"
    jl.write_text(json.dumps(_episode("a")) + "\n{oops\n")
    with pytest.raises(DataFormatError) as err:
        read_episodes(jl)
    assert err.value.record == "line 2"


def test_duplicate_episode_ids_rejected(tmp_path):
    p = tmp_path / "dup.json"
    p.write_text(json.dumps([_episode("a"), _episode("a")]))
    with pytest.raises(DataFormatError, match="duplicate episode id"):
        read_episodes(p)
