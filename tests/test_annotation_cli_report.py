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
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") >= 5

    assert main(["study", "report", db, "--campaign", "ds", "--out", str(tmp_path / "r.docx")]) == 2
    assert main(["study", "agreement", db, "--campaign", "nope"]) == 2


def test_annotation_imports_neither_torch_nor_qt():
    code = ("import sys, annotation.cli, annotation.report, annotation.agreement, annotation.queue, annotation.importer;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'transformers')];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
