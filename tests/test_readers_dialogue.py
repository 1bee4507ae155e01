"""ConvAI2 / LoCoMo readers and read_any: real files import, bad input names file, record, field."""

import json
from pathlib import Path

import pytest

from engine.data.errors import DataFormatError
from engine.data.episode_format import episode_from_dict, episode_to_dict
from engine.data.readers import detect_format, read_any

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
CONVAI2 = DATA / "convai2" / "personachat_valid.json"
LOCOMO = DATA / "locomo" / "locomo_dev.json"
needs_data = pytest.mark.skipif(not CONVAI2.exists() or not LOCOMO.exists(), reason="shared datasets not present")


@needs_data
def test_real_convai2_file_gives_one_episode_per_dialogue_with_persona_memories():
    eps = read_any(CONVAI2)
    assert len(eps) == 1000 and detect_format(CONVAI2) == "convai2"
    ep = eps[0]
    assert [m.text for m in ep.memories][:2] == ["i'm a nurse.", "i am a great baker."]
    assert all(m.about == "Bot" and m.owner == "Bot" for m in ep.memories)
    turns = ep.sessions[0].turns
    assert turns[0].speaker == "Bot"  # __SILENCE__ first user turn dropped, the bot speaks first
    assert "__SILENCE__" not in {t.text for t in turns}
    episode_from_dict(episode_to_dict(ep))  # valid memlab-episode/1


@needs_data
def test_real_locomo_file_keeps_observations_as_memories_with_evidence_turns():
    eps = read_any(LOCOMO)
    assert [e.id for e in eps][:2] == ["conv-26", "conv-30"]
    ep = eps[0]
    assert ep.main.name == "Caroline" and ep.partners[0].name == "Melanie"
    assert len(ep.sessions) == 19
    m = ep.memories[0]
    assert m.source_turns == ["D1:3"] and m.session == 0
    turn_text = {t.id: t.text for _, t in ep.turns()}
    assert "LGBTQ support group" in turn_text["D1:3"]
    multi = [m for e in eps for m in e.memories if len(m.source_turns) > 1]
    assert multi, "list-valued and comma-separated evidence become several source turns"
    for e in eps:
        episode_from_dict(episode_to_dict(e))


PARLAI = (
    "1 your persona: i like to ski.\n"
    "2 your persona: i have a cat.\n"
    "3 partner's persona: i am a chef.\n"
    "4 hi , how are you ?\tgood , i just got back from skiing .\t\tcand a|cand b\n"
    "5 nice . do you have pets ?\tyes , a cat named tom .\n"
    "1 your persona: i am tall.\n"
    "2 hello\thi there\n"
)


def test_parlai_text_form(tmp_path):
    f = tmp_path / "train_both_original.txt"
    f.write_text(PARLAI)
    eps = read_any(f)
    assert len(eps) == 2
    a = eps[0]
    assert [m.text for m in a.memories] == ["i like to ski.", "i have a cat.", "i am a chef."]
    assert [m.about for m in a.memories] == ["Bot", "Bot", "User"]
    assert [(t.speaker, t.text) for t in a.sessions[0].turns] == [
        ("User", "hi , how are you ?"), ("Bot", "good , i just got back from skiing ."),
        ("User", "nice . do you have pets ?"), ("Bot", "yes , a cat named tom .")]


@pytest.mark.parametrize("text, record, field", [
    ("1 your persona: x\n2 hello\n", "dialogue 0 (line 1)", "labels"),
    ("1 your persona: x\n3 hi\tho\n", "dialogue 0 (line 1)", "line_number"),
    ("1 your persona: x\n2 hi\tho\nnot numbered\n", "line 3", "line_number"),
])
def test_parlai_errors_name_record_and_field(tmp_path, text, record, field):
    f = tmp_path / "p.txt"
    f.write_text(text)
    with pytest.raises(DataFormatError) as e:
        read_any(f, "convai2")
    assert e.value.record == record and e.value.field == field and str(f) in str(e.value)


@pytest.mark.parametrize("doc, record, field", [
    ([{"persona": ["a"], "dialogue": [["hi", 3]]}], 0, "dialogue[0][1]"),
    ([{"persona": ["a"], "dialogue": [["hi", "yo"]]}, {"persona": "a", "dialogue": []}], 1, "persona"),
    ([{"persona": ["a"]}], 0, "dialogue"),
    ([{"persona": ["a"], "dialogue": [["hi", "yo"], ["__SILENCE__", "x"]]}], 0, "dialogue[1][0]"),
])
def test_xpersona_errors(tmp_path, doc, record, field):
    f = tmp_path / "x.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError) as e:
        read_any(f, "convai2")
    assert (e.value.record, e.value.field) == (record, field)


def _locomo():
    return [{"sample_id": "c1", "conversation": {
        "speaker_a": "Ann", "speaker_b": "Bo", "session_1_date_time": "1 May 2023",
        "session_1": [{"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a dog."},
                      {"speaker": "Bo", "dia_id": "D1:2", "text": "Nice!", "blip_caption": "a dog"}]},
        "observation": {"session_1_observation": {"Ann": [["Ann adopted a dog.", "D1:1"]]}}}]


def test_locomo_small_and_errors(tmp_path):
    f = tmp_path / "l.json"
    f.write_text(json.dumps(_locomo()))
    ep, = read_any(f)
    assert ep.sessions[0].turns[1].text == "Nice! [shares a photo: a dog]"
    assert ep.memories[0].source_turns == ["D1:1"] and ep.memories[0].about == "Ann"
    bad = _locomo()
    bad[0]["observation"]["session_1_observation"]["Ann"][0][1] = "D9:9"
    f.write_text(json.dumps(bad))
    with pytest.raises(DataFormatError) as e:
        read_any(f, "locomo")
    assert e.value.record == "c1" and e.value.field == "observation.session_1_observation.Ann[0][1]"
    bad = _locomo()
    bad[0]["conversation"]["session_1"][0]["speaker"] = "Zed"
    f.write_text(json.dumps(bad))
    with pytest.raises(DataFormatError) as e:
        read_any(f)
    assert e.value.field == "conversation.session_1[0].speaker"


def test_read_any_rejects_unknown_content(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFormatError) as e:
        read_any(f)
    assert "UTF-8" in str(e.value)
