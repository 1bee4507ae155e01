"""Input that never ends in a traceback (issue 13): huge numbers, lone surrogates, non-finite values,
odd Likert spellings, formula injection in CSV exports — each a located error or a documented rule."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotation.campaigns import add_annotator, create_campaign
from annotation.db import StudyError, init_study
from annotation.importer import import_file
from annotation.ratings import import_ratings_csv, rate
from annotation.report import write_report
from annotation.scales import parse_value
from engine.data.episode_format import episode_to_dict
from engine.data.errors import DataFormatError
from tests.annotation_helpers import episode_file, misc_episode

ROOT = Path(__file__).resolve().parents[1]
HUGE = "9" * 4301
PLACEHOLDER = "__POISON__"
POISONS = {  # raw JSON text → what the error must say
    HUGE: "4301 digits",
    "-" + HUGE: "4301 digits",
    "1e400": "too large",
    "NaN": "not a JSON number",
    "-Infinity": "not a JSON number",
    '"\\ud800"': "lone surrogate",
    '"ok \\udfff tail"': "lone surrogate",
}


def _dump(study):
    return {t: study.query(f"SELECT * FROM {t}") for t in study.db.table_names()}


def _bases():
    convai = [{"persona": ["i like tea."], "dialogue": [["hi", "hello"], ["how are you", "fine"]]},
              {"persona": ["i ski."], "dialogue": [["__SILENCE__", "hey"]]}]
    memlab = [episode_to_dict(misc_episode("fz0")), episode_to_dict(misc_episode("fz1"))]
    locomo = [{"sample_id": "c", "conversation": {"speaker_a": "A", "speaker_b": "B",
               "session_1": [{"speaker": "A", "dia_id": "D1:1", "text": "hi"}]},
               "observation": {"session_1_observation": {"A": [["A said hi.", "D1:1"]]}}}]
    return {"convai2": convai, "memlab": memlab, "locomo": locomo}


def _leaves(doc):
    out = []

    def walk(x, parent, key):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, x, k)
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, x, i)
        else:
            out.append((parent, key))
    walk(doc, None, None)
    return out


def _poisoned(base, where: int, poison: str, jsonl: bool) -> str:
    doc = json.loads(json.dumps(base))
    parent, key = _leaves(doc)[where % len(_leaves(doc))]
    parent[key] = PLACEHOLDER
    if jsonl:
        text = "\n".join(json.dumps(d) for d in doc) + "\n"
    else:
        text = json.dumps(doc, indent=1)
    return text.replace(json.dumps(PLACEHOLDER), poison)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["convai2", "memlab", "locomo"]), where=st.integers(0, 500),
       poison=st.sampled_from(sorted(POISONS)), fmt=st.sampled_from(["auto", "given"]), jsonl=st.booleans())
def test_unstorable_values_in_any_field_are_located_errors(tmp_path_factory, kind, where, poison, fmt, jsonl):
    tmp = tmp_path_factory.mktemp("poison")
    jsonl = jsonl and kind == "memlab"
    f = tmp / ("in.jsonl" if jsonl else "in.json")
    f.write_text(_poisoned(_bases()[kind], where, poison, jsonl), encoding="utf-8")
    with init_study(tmp / "s.db") as s:
        before = _dump(s)
        with pytest.raises(DataFormatError) as e:
            import_file(s, f, "auto" if fmt == "auto" else kind)
        assert POISONS[poison] in str(e.value)
        assert e.value.record is not None and e.value.field is not None, str(e.value)
        assert _dump(s) == before


def test_lone_surrogate_names_record_and_field(tmp_path):
    doc = _bases()["convai2"]
    doc[1]["dialogue"][0][1] = PLACEHOLDER
    f = tmp_path / "c.json"
    f.write_text(json.dumps(doc).replace(json.dumps(PLACEHOLDER), '"bad \\ud83d"'))
    with init_study(tmp_path / "s.db") as s, pytest.raises(DataFormatError) as e:
        import_file(s, f)
    assert (e.value.record, e.value.field) == (1, "dialogue[0][1]")


def test_cli_reports_a_huge_number_without_a_traceback(tmp_path):
    f = tmp_path / "big.json"
    f.write_text('[{"persona": ["a"], "dialogue": [["hi", "yo"]], "n": ' + HUGE + "}]")
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    init_study(tmp_path / "s.db").close()
    out = subprocess.run([sys.executable, "-m", "desktop.cli", "study", "import", str(tmp_path / "s.db"), str(f)],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "4301 digits" in out.stderr and "record 0, field n" in out.stderr


def test_meta_with_nan_is_rejected_not_stored_as_nonstandard_json(tmp_path):
    d = episode_to_dict(misc_episode("m"))
    d["meta"] = {"score": PLACEHOLDER}
    f = tmp_path / "m.json"
    f.write_text(json.dumps([d]).replace(json.dumps(PLACEHOLDER), "NaN"))
    with init_study(tmp_path / "s.db") as s:
        with pytest.raises(DataFormatError, match="meta.score"):
            import_file(s, f)
        assert s.db["episodes"].count == 0


# --- ratings values ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e400", "NaN", "3.5", "٣", "३", "three", "", "0", "6", True])
def test_bad_likert_values_are_refused_with_a_message(raw):
    with pytest.raises(StudyError, match="Likert"):
        parse_value("likert", raw)


@pytest.mark.parametrize("raw,value", [("3", 3), (" 4 ", 4), ("3.0", 3), ("5.00", 5), (2, 2), (1.0, 1)])
def test_documented_likert_spellings_are_accepted(raw, value):
    assert parse_value("likert", raw) == value


def _campaign(tmp_path):
    s = init_study(tmp_path / "s.db")
    import_file(s, episode_file(tmp_path, 1))
    create_campaign(s, "c", "model", groups=1)
    return s


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_ratings_csv_non_finite_values_are_located(tmp_path, value):
    with _campaign(tmp_path) as s:
        f = tmp_path / "r.csv"
        f.write_text(f"item,criterion,annotator,group,value\nep0,humanness,ann,A,{value}\n")
        with pytest.raises(StudyError, match="line 2: a Likert rating"):
            import_ratings_csv(s, "c", f)
        f.write_text(f"item,criterion,annotator,group,value,seconds\nep0,humanness,ann,A,3,{value}\n")
        with pytest.raises(StudyError, match="line 2: seconds"):
            import_ratings_csv(s, "c", f)
        assert s.db["ratings"].count == 0


@settings(max_examples=60, deadline=None)
@given(raw=st.one_of(st.floats(), st.integers(), st.text(max_size=8),
                     st.sampled_from(["nan", "inf", "1e400", HUGE, "٣", "\ud800"])))
def test_parse_value_never_raises_anything_but_study_error(raw):
    for scale in ("likert", "passfail"):
        try:
            v = parse_value(scale, raw)
        except StudyError:
            continue
        assert v in ((1, 2, 3, 4, 5) if scale == "likert" else (0, 1))


def test_csv_export_escapes_formulas(tmp_path):
    with _campaign(tmp_path) as s:
        add_annotator(s, "=HYPERLINK(\"http://x\")", "A")
        from annotation.queue import next_item
        item = next_item(s, "c", "=HYPERLINK(\"http://x\")")
        rate(s, "c", "=HYPERLINK(\"http://x\")", item.item_id, "humanness", 4, comment="@SUM(1+1)")
        rate(s, "c", "=HYPERLINK(\"http://x\")", item.item_id, "engagingness", 3, comment="-2+3")
        out = write_report(s, "c", tmp_path / "r.csv")
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert {r["annotator"] for r in rows} == {"'=HYPERLINK(\"http://x\")"}
    assert [r["comment"] for r in rows] == ["'@SUM(1+1)", "'-2+3"]
    assert all(not r["rating_id"].startswith("'") for r in rows)
