"""Study database: schema, WAL, foreign keys, append-only ratings, all-or-nothing imports (+ fuzzing)."""

import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from annotation.db import SCHEMA_VERSION, StudyError, init_study, open_study, schema_version
from annotation.importer import import_file
from engine.data.errors import DataFormatError

from annotation_helpers import episode_file


def test_new_study_has_wal_foreign_keys_and_schema_version(tmp_path):
    with init_study(tmp_path / "s.db") as s:
        assert s.one("PRAGMA journal_mode") == "wal"
        assert s.one("PRAGMA foreign_keys") == 1
        assert schema_version(s) == SCHEMA_VERSION
        with pytest.raises(sqlite3.IntegrityError):
            s.conn.execute("INSERT INTO sessions VALUES ('nope', 0, 'x', '', '', NULL)")
    with open_study(tmp_path / "s.db") as s:  # reopening migrates nothing twice
        assert s.one("SELECT COUNT(*) FROM schema_version") == SCHEMA_VERSION


def test_open_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(StudyError, match="memlab study init"):
        open_study(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StudyError, match="not a MemLab study"):
        open_study(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StudyError):
        open_study(junk)


def test_import_counts_and_duplicate_import_leaves_study_unchanged(tmp_path):
    f = episode_file(tmp_path)
    with init_study(tmp_path / "s.db") as s:
        seen = []
        r = import_file(s, f, progress=lambda d, t: seen.append((d, t)))
        assert (r.episodes, r.sessions, r.turns, r.memories, r.links, r.tags) == (3, 6, 12, 6, 3, 9)
        assert seen[-1] == (f.stat().st_size, f.stat().st_size)  # progress counts bytes read
        before = _dump(s)
        with pytest.raises(DataFormatError, match="already in the study") as e:
            import_file(s, f)
        assert e.value.record == "ep0" and e.value.field == "id"
        assert _dump(s) == before


def test_ratings_cannot_be_updated_or_deleted(tmp_path):
    from annotation.campaigns import add_annotator, create_campaign
    from annotation.queue import next_item
    from annotation.ratings import rate

    with init_study(tmp_path / "s.db") as s:
        import_file(s, episode_file(tmp_path, 1))
        create_campaign(s, "c", "model")
        add_annotator(s, "ann", "A")
        item = next_item(s, "c", "ann")
        r1 = rate(s, "c", "ann", item.item_id, "humanness", 3, seconds=4.5)
        r2 = rate(s, "c", "ann", item.item_id, "humanness", 5, seconds=2.0)  # an edit is a new row
        assert r2.id > r1.id
        assert s.one("SELECT COUNT(*) FROM ratings") == 2
        assert s.one("SELECT value FROM latest_ratings") == 5
        for sql in ("UPDATE ratings SET value = 1", "DELETE FROM ratings"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                s.conn.execute(sql)
        assert [r["value"] for r in s.query("SELECT value FROM ratings ORDER BY id")] == [3, 5]


def _dump(study):
    return {t: study.query(f"SELECT * FROM {t}") for t in study.db.table_names()}


# --- fuzzing: only the clean validation error, and the database unchanged -------------------------
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25)


def _mutations():
    base_convai = [{"persona": ["i like tea."], "dialogue": [["hi", "hello"], ["how are you", "fine"]]}]
    base_locomo = [{"sample_id": "c", "conversation": {"speaker_a": "A", "speaker_b": "B",
                    "session_1": [{"speaker": "A", "dia_id": "D1:1", "text": "hi"}]},
                    "observation": {"session_1_observation": {"A": [["A said hi.", "D1:1"]]}}}]
    from annotation_helpers import misc_episode
    from engine.data.episode_format import episode_to_dict
    base_memlab = [episode_to_dict(misc_episode("fz"))]
    return st.sampled_from([base_convai, base_locomo, base_memlab])


def _mutate(doc, path_choice, value):
    """Replace one nested value (chosen by path_choice) with an arbitrary JSON value."""
    nodes = []

    def walk(x, parent, key):
        nodes.append((parent, key))
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, x, k)
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, x, i)
    walk(doc, None, None)
    parent, key = nodes[path_choice % len(nodes)]
    if parent is None:
        return value
    if isinstance(parent, dict) and path_choice % 3 == 0:
        del parent[key]
    else:
        parent[key] = value
    return doc


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=_mutations(), where=st.integers(0, 10_000), value=_json_values,
       fmt=st.sampled_from(["auto", "memlab", "convai2", "locomo"]))
def test_fuzzed_structures_give_clean_errors_and_no_partial_import(tmp_path_factory, base, where, value, fmt):
    tmp = tmp_path_factory.mktemp("fz")
    f = tmp / "in.json"
    f.write_text(json.dumps(_mutate(json.loads(json.dumps(base)), where, value)))
    with init_study(tmp / "s.db") as s:
        before = _dump(s)
        try:
            import_file(s, f, fmt)
        except DataFormatError as e:
            assert str(f) in str(e)
            assert _dump(s) == before


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400) | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")),
       big=st.booleans())
def test_fuzzed_bytes_and_huge_strings(tmp_path_factory, data, big):
    tmp = tmp_path_factory.mktemp("fb")
    f = tmp / "in.txt"
    if big:
        data = json.dumps([{"persona": ["x" * 2_000_000], "dialogue": [["a" * 100_000, 7]]}]).encode()
    f.write_bytes(data)
    with init_study(tmp / "s.db") as s:
        before = _dump(s)
        try:
            import_file(s, f)
        except DataFormatError:
            assert _dump(s) == before
