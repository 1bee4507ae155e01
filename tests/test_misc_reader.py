"""The MiSC reader: a MiSC-shaped fixture into memlab-episode/1, and located errors for bad records."""

import copy
import json
from pathlib import Path

import pytest

from engine.data.episode_format import episode_from_dict, episode_to_dict
from engine.data.errors import DataFormatError
from engine.data.misc import split_from_name
from engine.data.readers import detect_format, read_any

FIXTURE = Path(__file__).parent / "fixtures" / "misc" / "val.jsonl"


def _records():
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(tmp_path, records, name="misc_test.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return p


def test_fixture_reads_into_valid_episodes():
    assert detect_format(FIXTURE) == "misc"
    eps = read_any(FIXTURE)
    assert [e.id for e in eps] == ["misc-val-0001", "misc-val-0002"]
    e = eps[0]
    assert (e.main.name, e.main.job) == ("Alice", "teacher")
    assert [(p.name, p.job) for p in e.partners] == [("Bob", "student"), ("Carol", "Bob's mother"), ("Dan", "neighbour")]
    assert [s.partner.name for s in e.sessions] == ["Bob", "Carol", "Dan", "Bob", "Carol", "Dan"]
    assert e.sessions[0].event.startswith("Bob asks Alice")
    assert len(e.memories) == 8 and all(m.owner == "Alice" for m in e.memories)
    about = {m.text: (m.about, m.session) for m in e.memories}
    assert about["Bob is struggling with fractions in maths."] == ("Bob", 0)
    assert about["Carol says Bob seems calmer at home."] == ("Carol", 4)
    by_text = {m.id: m.text for m in e.memories}
    links = {(by_text[l.src], by_text[l.dst], l.kind) for l in e.links}
    assert ("Bob finished all his maths homework this week.", "Bob is struggling with fractions in maths.",
            "update") in links
    assert all(e.memory(l.src).session >= e.memory(l.dst).session for l in e.links)
    tagged = {t.id: [by_text[m] for m in t.memory_ids] for _, t in e.turns() if t.memory_ids}
    assert tagged["s1t1"] == ["Bob is struggling with fractions in maths.",
                              "I promised Bob an extra maths session on Thursdays."]
    assert "s5t3" in tagged and "s5t0" in tagged  # the {"index": [...]} tag form
    assert e.meta["split"] == "valid" and e.meta["session_summaries"]["0"].startswith("Bob asks")
    # the second record: [[speakers], [utterances]] sessions and the paper's "About X: ..." memory string
    o = eps[1]
    assert (o.main.name, o.main.job) == ("Omar", "chef") and [p.name for p in o.partners] == ["Lena", "Yusuf"]
    assert {(m.about, m.text) for m in o.memories} >= {("Lena", "Lena loved the soup and wants to learn the recipe.")}
    assert o.meta["split"] == "valid"  # from the file name
    for ep in eps:  # every episode passes the memlab-episode/1 validator
        episode_from_dict(episode_to_dict(ep))


def test_split_from_name_and_field(tmp_path):
    assert split_from_name("train.jsonl") == "train" and split_from_name("misc_test.jsonl") == "test"
    assert split_from_name("val.jsonl") == "valid" and split_from_name("other.jsonl") is None
    recs = _records()
    recs[1]["split"] = "test"
    eps = read_any(_write(tmp_path, recs, "episodes.jsonl"), "misc")
    assert [e.meta.get("split") for e in eps] == ["valid", "test"]
    # a JSON list works as well as JSON Lines
    p = tmp_path / "train.json"
    p.write_text(json.dumps(_records()[1:]), encoding="utf-8")
    assert detect_format(p) == "misc" and read_any(p)[0].meta["split"] == "train"


def _broken(mutate):
    recs = _records()
    mutate(recs[0])
    return recs


@pytest.mark.parametrize("mutate, field, words", [
    (lambda r: r.pop("dataID"), "dataID", "missing"),
    (lambda r: r.pop("main_speaker"), "main_speaker", "missing"),
    (lambda r: r.pop("second_session_dialogue"), "second_session_dialogue", "missing while later sessions exist"),
    (lambda r: r["first_session_speakers"].pop(), "first_session_speakers", "3 speakers for 4 utterances"),
    (lambda r: r["first_session_dialogue"].__setitem__(2, 7), "first_session_dialogue[2]", "expected a string"),
    (lambda r: r["first_session_speakers"].__setitem__(2, "Zed"), "first_session_speakers[2]", "neither the main speaker"),
    (lambda r: r["first_session_memory"].__setitem__("Zed", ["x"]), "first_session_memory.Zed", "unknown speaker"),
    (lambda r: r["second_session_links"][0].__setitem__(1, "nobody said this"), "second_session_links[0][1]",
     "no memory says"),
    (lambda r: r["second_session_links"].append(["Carol says Bob has been anxious about school.",
                                                 "Carol says Bob has been anxious about school."]),
     "second_session_links[2]", "cannot link to itself"),
    (lambda r: r["first_session_tags"].__setitem__(0, ["Carol says Bob seems calmer at home."]),
     "first_session_tags[0][0]", "formed only in the fifth session"),
    (lambda r: r["first_session_tags"].pop(), "first_session_tags", "3 tag lists for 4 utterances"),
    (lambda r: r.__setitem__("split", "dev-2"), "split", "unknown split"),
    (lambda r: r.__setitem__("eleventh_session_dialogue", ["x"]), "eleventh_session_dialogue", "unknown session ordinal"),
])
def test_bad_records_name_record_and_field(tmp_path, mutate, field, words):
    p = _write(tmp_path, _broken(mutate))
    with pytest.raises(DataFormatError) as e:
        read_any(p, "misc")
    assert e.value.field == field and words in e.value.reason
    assert e.value.record in ("misc-val-0001", "line 1")
    assert str(p) in str(e.value)


def test_partner_inferred_and_ambiguous_sessions_rejected(tmp_path):
    recs = _records()
    del recs[0]["first_session_partner"]
    assert read_any(_write(tmp_path, recs), "misc")[0].sessions[0].partner.name == "Bob"
    recs[0]["first_session_speakers"][0] = "Dan"
    with pytest.raises(DataFormatError, match="exactly one partner"):
        read_any(_write(tmp_path, recs), "misc")


def test_duplicate_ids_and_the_study_stream(tmp_path):
    recs = _records()
    recs[1] = copy.deepcopy(recs[0])
    with pytest.raises(DataFormatError, match="duplicate episode id"):
        read_any(_write(tmp_path, recs), "misc")
    from engine.data.stream import EpisodeStream

    stream = EpisodeStream(FIXTURE)
    assert stream.format == "misc" and [e.id for e in stream] == ["misc-val-0001", "misc-val-0002"]
