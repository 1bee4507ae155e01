"""``memlab eval compare``: the same held-out turns for every system, given the true history through the
contract; one report with bootstrap intervals; resumable records; a failing system is reported, not fatal."""

import json

import pytest

from engine.agent import Unsupported
from engine.data.convai2 import episodes_from_xpersona
from engine.evaluation.compare import run_compare, score
from engine.evaluation.compare_report import chart, markdown_table
from engine.evaluation.heldout import heldout_queries
from engine.systems import registry
from engine.systems.generation import GenerationSettings
from tiny.episodes import episodes
from tiny.models import tiny_encoder, tiny_lm


@pytest.fixture(scope="module")
def models():
    return registry.Models(generator=tiny_lm("llama"), encoder=tiny_encoder(),
                           settings=GenerationSettings(max_new_tokens=4))


def _convai2():
    doc = [{"persona": ["i love cats .", "i am a nurse ."],
            "dialogue": [["hi !", "hello , how are you ?"], ["fine . pets ?", "i have two cats ."],
                         ["nice . job ?", "i work as a nurse ."]]}]
    return episodes_from_xpersona(doc, "valid.json")


def test_heldout_turn_is_the_first_memory_tagged_turn_of_the_last_session():
    q = heldout_queries(episodes(2))[0][0]
    assert q.session_pos == 1 and q.target.memory_ids and q.target.speaker == "Alice"
    assert q.utterance == "Hi Alice, long time no see!" and q.prefix() == []
    assert [s.index for s in q.earlier_sessions()] == [0]
    assert "Bob adopted a grey cat named Tom." in q.persona()


def test_convai2_holds_out_the_last_bot_turn_with_the_persona_given():
    q = heldout_queries(_convai2())[0][0]
    assert q.reference == "i work as a nurse ." and q.utterance == "nice . job ?"
    assert len(q.prefix()) == 4 and q.earlier_sessions() == []
    assert [m.text for m in q.given_memories()] == ["i love cats .", "i am a nurse ."]


def test_every_system_answers_the_same_turns_with_intervals(models, tmp_path):
    queries, _ = heldout_queries(episodes(3))
    built = []

    def build(name):
        built.append(name)
        return registry.build_agent(name, models)

    systems = ["emma", "summary", "no-memory"]
    path = tmp_path / "records.jsonl"
    results = run_compare(queries, systems, build, samples=2, records_path=path)
    assert all(len(results[s].records) == 3 for s in systems)
    ingested = [json.loads(l) for l in path.read_text().splitlines()]
    assert {r["earlier_sessions"] for r in ingested} == {1}
    report = score(results, n_resamples=200)
    assert report["n"] == 3 and set(report["systems"]) == set(systems)
    for d in report["systems"].values():
        for key in ("bleu1", "rougeL", "c_dist1", "s_dist1", "persona_f1"):
            lo, hi = d[f"{key}_ci"]
            assert 0 <= lo <= d[key] <= hi <= 1
    assert "con_s" not in report["systems"]["emma"]  # no classifier given: said in the notes instead
    assert any("con_s" in n for n in report["meta"]["emma"]["notes"])
    table = markdown_table(report, "tiny")
    assert table.count("\n| ") >= 4 and "BLEU-1" in table
    assert chart(report, tmp_path / "c.png").stat().st_size > 1000
    built.clear()
    again = run_compare(queries, systems, build, samples=2, records_path=path)  # resume: nothing to redo
    assert built == [] and [r["response"] for r in again["emma"].records] == [r["response"] for r in results["emma"].records]


def test_a_system_that_cannot_take_the_history_is_reported_and_the_rest_go_on(models):
    queries, _ = heldout_queries(_convai2())

    def build(name):
        agent = registry.build_agent("no-memory", models)
        if name == "stubborn":
            def restore(turns):
                raise Unsupported("stubborn cannot restore a session")
            agent.restore = restore
        return agent

    results = run_compare(queries, ["stubborn", "no-memory"], build, samples=0)
    assert "cannot restore" in results["stubborn"].failed
    report = score(results, n_resamples=100)
    assert list(report["systems"]) == ["no-memory"] and report["meta"]["stubborn"]["failed"]


def test_cli_json_report(tmp_path, capsys):
    from desktop.cli import main

    lm = tiny_lm("llama", path=tmp_path / "lm")
    enc = tiny_encoder(path=tmp_path / "enc")
    data = tmp_path / "eps.json"
    from engine.data.episode_format import write_episodes

    write_episodes(data, episodes(2))
    rc = main(["eval", "compare", "--systems", "no-memory,rag", "--data", str(data), "--lm", str(lm),
               "--encoder", str(enc), "--adapter", "none", "--samples", "2", "--max-new-tokens", "3",
               "--classifier", "none", "--json", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0
    report = json.loads(out)
    assert report["n"] == 2 and set(report["systems"]) == {"no-memory", "rag"}
    assert (tmp_path / "out" / "compare.png").is_file() and (tmp_path / "out" / "table.md").is_file()


def test_cli_names_the_bad_data_file(tmp_path, capsys):
    from desktop.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    rc = main(["eval", "compare", "--systems", "no-memory", "--data", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.json" in err and "Traceback" not in err
