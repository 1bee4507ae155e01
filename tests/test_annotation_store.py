"""The study owns its schema: open_study lending, migration 2, eval reports, compare votes, accounts."""

import json
import sqlite3

import pytest

from annotation.comparisons import add_vote, import_votes_jsonl, votes
from annotation.db import MIGRATIONS, StudyError, _statements, init_study, now, open_study, schema_version
from annotation.eval_reports import add_eval_report, eval_reports
from annotation.importer import import_file
from tests.annotation_helpers import episode_file


def test_open_study_lends_an_open_study_and_closes_a_path(tmp_path):
    s = init_study(tmp_path / "s.db")
    with open_study(s) as lent:
        assert lent is s
        with open_study(s):
            pass
    assert s.one("SELECT 1") == 1  # still open: the owner closes it
    s.close()
    with open_study(tmp_path / "s.db") as opened:
        assert opened.one("SELECT 1") == 1
    with pytest.raises(sqlite3.ProgrammingError):
        opened.one("SELECT 1")


def test_version_1_study_migrates_and_keeps_annotators_one_per_name_key(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for st in _statements(MIGRATIONS[0]):
        conn.execute(st)
    conn.execute("INSERT INTO schema_version VALUES (1, ?)", (now(),))
    conn.execute("INSERT INTO annotators (name, created_at) VALUES ('Ånn', ?)", (now(),))
    conn.commit()
    conn.close()
    with open_study(path) as s:
        assert schema_version(s) == len(MIGRATIONS)
        assert s.query("SELECT name_key, role FROM annotators") == [{"name_key": "ånn", "role": "annotator"}]


def test_eval_reports_are_stored_append_only_and_validated(tmp_path):
    with init_study(tmp_path / "s.db") as s:
        rid = add_eval_report(s, {"systems": ["emma", "rag"], "data": "ConvAI2 valid, 20 dialogues",
                                  "metrics": {"emma": {"con_score": {"value": 0.6, "low": 0.5, "high": 0.7, "n": 20}},
                                              "rag": {"bleu1": 0.2}}})
        [r] = eval_reports(s)
        assert (r.id, r.systems, r.campaign) == (rid, ["emma", "rag"], None)
        assert r.metric_rows()[0] == {"system": "emma", "metric": "con_score", "value": 0.6, "low": 0.5,
                                      "high": 0.7, "n": 20}
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            s.conn.execute("UPDATE eval_reports SET data = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            s.conn.execute("DELETE FROM eval_reports")
        for bad, field in (({"systems": [], "data": "x"}, "systems"), ({"systems": ["a"], "data": ""}, "data"),
                           ({"systems": ["a"], "data": "x", "metrics": {"a": {"m": float("nan")}}}, "metrics.a.m.value"),
                           ({"systems": ["a"], "data": "x", "campaign": "nope"}, "campaign"),
                           ({"systems": ["a"], "data": "x", "extra": float("inf")}, "JSON")):
            with pytest.raises(StudyError, match=field):
                add_eval_report(s, bad)
        assert len(eval_reports(s)) == 1


def test_compare_votes_live_in_the_study_append_only(tmp_path):
    with init_study(tmp_path / "s.db") as s:
        v = add_vote(s, "emma", "rag", "left", blind=True, transcript={"left": [{"text": "hi"}]},
                     partners=[{"name": "Bob"}], memory={"emma": {"stored": ["m"]}})
        [got] = votes(s, with_transcripts=True)
        assert (got["left"], got["right"], got["outcome"], got["blind"]) == ("emma", "rag", "left", True)
        assert got["transcript"] == {"left": [{"text": "hi"}]} and got["memory"]["emma"]["stored"] == ["m"]
        assert got["id"] == v["id"]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            s.conn.execute("DELETE FROM compare_votes")
        with pytest.raises(StudyError):
            add_vote(s, "emma", "emma", "left", blind=False, transcript={})
        with pytest.raises(StudyError):
            add_vote(s, "emma", "rag", "draw", blind=False, transcript={})


def test_legacy_votes_jsonl_is_taken_in_once(tmp_path):
    f = tmp_path / "votes.jsonl"
    f.write_text("\n".join(json.dumps({"time": "2026-01-01T10:00:00", "left": "emma", "right": "rag",
                                       "outcome": o, "blind": True}) for o in ("left", "tie")) + "\n{\"torn", encoding="utf-8")
    with init_study(tmp_path / "s.db") as s:
        assert import_votes_jsonl(s, f) == 2
        assert import_votes_jsonl(s, f) == 0
        assert [v["outcome"] for v in votes(s)] == ["left", "tie"]


def test_import_cancel_leaves_study_unchanged(tmp_path):
    from annotation.importer import ImportCancelled, import_episodes
    from tests.annotation_helpers import misc_episode

    with init_study(tmp_path / "s.db") as s:
        with pytest.raises(ImportCancelled):
            import_episodes(s, [misc_episode(f"e{i}") for i in range(5)], cancel=lambda: True)
        assert s.db["episodes"].count == 0 and s.db["imports"].count == 0
        import_file(s, episode_file(tmp_path))
        assert s.db["episodes"].count == 3
