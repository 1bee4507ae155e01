"""`memlab study …` end to end: init, import, campaigns, annotators, ratings CSV, agreement, reports."""

import csv

import pytest
import json
import subprocess
import sys
from pathlib import Path

from desktop.cli import main

from annotation_helpers import episode_file

ROOT = Path(__file__).resolve().parents[1]


def _ratings_csv(path, items, criterion, values):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item", "criterion", "annotator", "group", "value"])
        for i, item in enumerate(items):
            for g in "ABC":
                w.writerow([item, criterion, f"{g}-{i % 2}", g, values(i, g)])


@pytest.mark.slow
def test_study_commands_end_to_end(tmp_path, capsys):
    db = str(tmp_path / "s.db")
    assert main(["study", "init", db]) == 0
    assert main(["study", "import", db, str(episode_file(tmp_path, 6))]) == 0
    assert main(["study", "campaign", "create", db, "--name", "ds", "--preset", "dataset"]) == 0
    assert main(["study", "campaign", "create", db, "--name", "mem", "--preset", "memory", "--overlap", "full"]) == 0
    assert main(["study", "annotator", "add", db, "zoe", "--group", "B"]) == 0
    out = capsys.readouterr().out
    assert "12 items" in out and "zoe" in out

    sessions = [f"ep{e}#s{s}" for e in range(6) for s in range(2)]
    good = tmp_path / "ds.csv"
    _ratings_csv(good, sessions, "coherence", lambda i, g: 5 if i % 3 else (4 if g == "C" else 5))
    bad = tmp_path / "bad.csv"
    _ratings_csv(bad, sessions, "coherence", lambda i, g: "x" if i == 4 and g == "B" else 3)
    assert main(["study", "ratings", "import", db, "--campaign", "ds", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 15" in err  # header + 4 items × 3 groups + A → B's row of item 4 is line 15
    assert main(["study", "ratings", "import", db, "--campaign", "ds", str(good)]) == 0
    assert "imported 36 ratings" in capsys.readouterr().out

    assert main(["study", "agreement", db, "--campaign", "ds", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["criteria"]["coherence"]
    assert c["n_items_all_groups"] == 12
    assert c["cross_group_agreement"] == 8 / 12  # items 0, 3, 6, 9: group C gave 4, A and B 5
    assert c["agreement_within_1"] == 1.0
    assert c["groups"]["C"]["mean"] == (8 * 5 + 4 * 4) / 12

    for suffix in ("csv", "json", "html", "pdf"):
        out_file = tmp_path / f"report.{suffix}"
        assert main(["study", "report", db, "--campaign", "ds", "--out", str(out_file)]) == 0
        assert out_file.stat().st_size > 0
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert len(rows) == 36 and {r["latest"] for r in rows} == {"1"}
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["agreement"]["criteria"]["coherence"]["cross_group_agreement"] == 8 / 12
    assert data["facts"]["n_items"] == 12
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Krippendorff" in html and "66.7%" in html
    pdf = (tmp_path / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and 3 <= pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") <= 5  # a report, not a page per table

    assert main(["study", "report", db, "--campaign", "ds", "--out", str(tmp_path / "r.docx")]) == 2
    assert main(["study", "agreement", db, "--campaign", "nope"]) == 2


def test_annotation_imports_neither_torch_nor_qt():
    code = ("import sys, annotation.cli, annotation.report, annotation.agreement, annotation.queue, annotation.importer;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'transformers')];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _reported_study(tmp_path):
    from annotation.campaigns import add_annotator, create_campaign
    from annotation.comparisons import add_vote
    from annotation.db import init_study
    from annotation.eval_reports import add_eval_report
    from annotation.importer import import_file
    from annotation.queue import next_item
    from annotation.ratings import rate

    s = init_study(tmp_path / "r.db")
    import_file(s, episode_file(tmp_path, 3))
    create_campaign(s, "m", "model", groups=2, overlap="full")
    for name, g in (("Ada", "A"), ("Ben", "B")):
        add_annotator(s, name, g, "m")
        while (item := next_item(s, "m", name)) is not None:
            for k, c in enumerate(item.criteria):
                rate(s, "m", name, item.item_id, c.name, 3 + (k + len(name)) % 3)
    add_eval_report(s, {"systems": ["emma"], "data": "ConvAI2 valid (20 dialogues)", "campaign": "m",
                        "title": "Automatic metrics",
                        "metrics": {"emma": {"con_score": {"value": 0.625, "low": 0.5, "high": 0.75, "n": 20}}}})
    add_vote(s, "emma", "rag", "left", blind=True, transcript={})
    return s


def test_html_report_shows_dates_as_dates_eval_reports_and_comparisons(tmp_path):
    import re

    from annotation.report import write_report

    with _reported_study(tmp_path) as s:
        out = write_report(s, "m", tmp_path / "r.html", bootstrap=50)
    text = out.read_text(encoding="utf-8")
    facts = text.split("<h2>Criteria</h2>")[0]
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", facts), "ISO time stamps in the report's facts"
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC", facts)
    assert "Rating period" in facts and "Automatic metrics" in text and "0.625" in text and "0.500 – 0.750" in text
    assert "emma vs rag" in text
    assert "95% interval" in text  # per-group means with intervals


def test_pdf_report_is_a_portrait_report_with_title_agreement_charts_and_tables(tmp_path):
    import re

    from annotation.report import write_report

    with _reported_study(tmp_path) as s:
        out = write_report(s, "m", tmp_path / "r.pdf", bootstrap=50)
    raw = out.read_bytes()
    pages = re.findall(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", raw)
    assert 3 <= len(pages) <= 6
    assert all(float(w) < float(h) for w, h in pages), "portrait A4 pages"
    assert len(re.findall(rb"/Subtype /Image", raw)) >= 3  # agreement, group means, distributions charts


def test_group_intervals_are_wilson_for_pass_rates_and_t_for_means():
    from annotation.report import group_interval

    lo, hi = group_interval({"n_ratings": 10, "distribution": {"pass": 8, "fail": 2}}, "passfail")
    assert lo == pytest.approx(0.490, abs=0.002) and hi == pytest.approx(0.943, abs=0.002)  # Wilson 8/10
    lo, hi = group_interval({"n_ratings": 9, "mean": 4.0, "sd": 1.0, "distribution": {}}, "likert")
    assert (lo, hi) == (pytest.approx(4 - 2.306 / 3, abs=1e-3), pytest.approx(4 + 2.306 / 3, abs=1e-3))
    assert group_interval({"n_ratings": 1, "mean": 4.0, "sd": None, "distribution": {}}, "likert") is None
