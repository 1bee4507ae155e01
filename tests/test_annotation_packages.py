"""Annotator packages (issue 14 §4): export per annotator, rate offline in parallel processes, merge back."""

import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from annotation.agreement import agreement_for_study
from annotation.campaigns import add_annotator, create_campaign, set_gold
from annotation.db import StudyError, init_study, open_study
from annotation.importer import import_file
from annotation.packages import is_package, merge_packages, package_annotator, package_info
from annotation.queue import next_item
from annotation.ratings import latest_ratings, rate

from annotation_helpers import episode_file, rate_everything

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {"A": 7, "B": 7, "C": 6}  # 20 annotators in three groups (EMMA paper §5.1)
NAMES = [f"{g}{i}" for g, n in GROUPS.items() for i in range(n)]

RATER = """
import sys
from annotation_helpers import rate_everything
rate_everything(sys.argv[1], sys.argv[2])
print("done", flush=True)
"""


def _study(tmp_path, name="s.db"):
    path = tmp_path / name
    with init_study(path) as s:
        import_file(s, episode_file(tmp_path, 8, name=f"{name}.json"))
        create_campaign(s, "mem", "memory", groups=3, overlap="split")
        for n in NAMES:
            add_annotator(s, n, n[0], "mem", pin="1234" if n == "A0" else None)
        set_gold(s, "mem", "ep0#m:m0", {"memory_summarization": 1})
    return path


def _latest(path):
    return sorted((r["item"], r["criterion"], r["annotator"], r["group"], r["value"]) for r in latest_ratings(path, "mem"))


@pytest.mark.slow
def test_twenty_annotators_rate_packages_in_parallel_and_merge_in_any_order_twice(tmp_path):
    study = _study(tmp_path)
    reference = tmp_path / "reference.db"
    shutil.copy(study, reference)
    for n in NAMES:                                     # the same ratings made in one file
        rate_everything(reference, n)

    packages = []
    for n in NAMES:
        out = tmp_path / "out" / f"{n}.memlab"
        out.parent.mkdir(exist_ok=True)
        info = package_annotator(study, None, n, out)   # the annotator's only campaign
        assert info.annotator == n and info.group == n[0]
        packages.append(out)

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", RATER, str(p), n], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for p, n in zip(packages, NAMES)]
    for p in procs:                                    # all 20 rate at once, each in its own file
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and out.strip() == "done", err

    rng = random.Random(14)
    order = packages[:]
    rng.shuffle(order)
    first = merge_packages(study, order[:12])
    rest = merge_packages(study, order[12:])
    reports = {Path(r.file).stem: r for r in first + rest}
    with open_study(reference) as ref:
        per_annotator = {r["name"]: r["n"] for r in ref.query(
            "SELECT a.name, COUNT(*) AS n FROM ratings r JOIN annotators a ON a.id = r.annotator_id GROUP BY a.name")}
    assert {n: r.added for n, r in reports.items()} == per_annotator
    assert all(r.already == 0 and r.flags_added == 1 for r in reports.values())

    rng.shuffle(order)
    again = merge_packages(study, order)               # merged twice: nothing more
    assert all(r.added == 0 and r.already == per_annotator[Path(r.file).stem] for r in again)

    assert _latest(study) == _latest(reference)
    with open_study(study) as s, open_study(reference) as ref:
        count = "SELECT COUNT(*) FROM ratings"
        assert s.one(count) == ref.one(count) == sum(per_annotator.values())
        assert s.one("SELECT COUNT(*) FROM item_flags") == ref.one("SELECT COUNT(*) FROM item_flags") == 20
    a, b = agreement_for_study(study, "mem", bootstrap=0), agreement_for_study(reference, "mem", bootstrap=0)
    assert a == b and a["criteria"]


def _small(tmp_path):
    study = _study(tmp_path)
    pkg = tmp_path / "A1.memlab"
    package_annotator(study, "mem", "A1", pkg)
    return study, pkg


def test_package_holds_only_that_annotators_part(tmp_path):
    study = _study(tmp_path)
    rate_everything(study, "B2")                        # other people's ratings exist in the study
    rate(study, "mem", "A0", next_item(study, "mem", "A0").item_id, "memory_summarization", 1)
    pkg = tmp_path / "A0.memlab"
    package_annotator(study, "mem", "A0", pkg)
    assert is_package(pkg) and not is_package(study)
    with open_study(pkg) as p:
        assert [r["name"] for r in p.query("SELECT name FROM annotators")] == ["A0"]
        assert [r["name"] for r in p.query("SELECT name FROM groups")] == ["A"]
        assert p.one("SELECT COUNT(*) FROM members") == 1
        assert p.one("SELECT COUNT(*) FROM ratings") == 1           # only A0's own earlier rating
        assert p.one("SELECT COUNT(DISTINCT annotator_id) FROM assignments") == 1
        gold = p.query("SELECT gold FROM items WHERE key = 'ep0#m:m0'")
        assert gold == [{"gold": "{}"}]                            # still gold, but no expected answer
        n_items = p.one("SELECT COUNT(*) FROM items")
        assert p.one("SELECT COUNT(*) FROM criteria") == 3
    with open_study(study) as s:
        assert n_items == s.one("SELECT COUNT(*) FROM assignments a JOIN annotators n ON n.id = a.annotator_id"
                                " WHERE n.name = 'A0'") < s.one("SELECT COUNT(*) FROM items")
    from annotation.accounts import check_pin
    assert check_pin(pkg, "A0", "1234") and not check_pin(pkg, "A0", "0000")  # the account travels with its PIN
    assert package_info(pkg).item_hashes and package_info(pkg).campaign == "mem"
    with pytest.raises(StudyError, match="already exists"):
        package_annotator(study, "mem", "A0", pkg)


def test_tampered_package_is_refused_and_study_unchanged(tmp_path):
    study, pkg = _small(tmp_path)
    rate_everything(pkg, "A1")
    before = _latest(study)
    conn = sqlite3.connect(pkg)
    conn.execute("UPDATE turns SET text = 'Bob failed the exam.' WHERE turn_id = 't0'")
    conn.commit()
    conn.close()
    with pytest.raises(StudyError, match="tampered"):
        merge_packages(study, [pkg])
    assert _latest(study) == before

    study2, pkg2 = _small(tmp_path / "x")
    conn = sqlite3.connect(pkg2)
    key = conn.execute("SELECT key FROM items LIMIT 1").fetchone()[0]
    conn.execute("DELETE FROM assignments WHERE item_id = (SELECT id FROM items WHERE key = ?)", (key,))
    conn.execute("DELETE FROM items WHERE key = ?", (key,))
    conn.commit()
    conn.close()
    with pytest.raises(StudyError, match="item set"):
        merge_packages(study2, [pkg2])


def test_package_from_another_study_is_refused(tmp_path):
    study, pkg = _small(tmp_path)
    other = _study(tmp_path / "o")                     # same episodes, same campaign name: still another study
    rate_everything(pkg, "A1")
    with pytest.raises(StudyError, match="another study"):
        merge_packages(other, [pkg])
    with pytest.raises(StudyError, match="not an annotator package"):
        merge_packages(study, [other])
    with open_study(other) as s:
        assert s.one("SELECT COUNT(*) FROM ratings") == 0


def test_merge_keeps_earlier_ratings_and_one_bad_package_stops_all(tmp_path):
    study, pkg = _small(tmp_path)
    item = next_item(study, "mem", "A2")
    rate(study, "mem", "A2", item.item_id, item.criteria[0].name, 1)   # rated in the study meanwhile
    rate_everything(pkg, "A1")
    bad = tmp_path / "bad.memlab"
    bad.write_bytes(b"not a study at all")
    with pytest.raises(StudyError, match="bad.memlab"):
        merge_packages(study, [pkg, bad])
    with open_study(study) as s:
        assert s.one("SELECT COUNT(*) FROM ratings") == 1
    [report] = merge_packages(study, [pkg])
    assert report.annotator == "A1" and report.added > 0 and "A1 (group A)" in str(report)
    with open_study(study) as s:
        assert s.one("SELECT COUNT(*) FROM ratings WHERE origin = 'queue'") == 1
        assert s.one("SELECT COUNT(*) FROM ratings WHERE origin = 'package'") == report.added


def test_cli_package_and_merge(tmp_path, capsys):
    from desktop.cli import main

    study = _study(tmp_path)
    out = tmp_path / "C3.memlab"
    assert main(["study", "package", str(study), "--annotator", "c3", "--out", str(out)]) == 0
    assert "C3's queue" in capsys.readouterr().out
    rate_everything(out, "C3")
    assert main(["study", "merge", str(study), str(out), str(out)]) == 0
    text = capsys.readouterr().out
    assert "C3 (group C)" in text and "0 rating(s) added" in text.splitlines()[1]
    assert main(["study", "package", str(study), "--annotator", "nobody", "--out", str(tmp_path / "n.memlab")]) == 2
    assert "no annotator 'nobody'" in capsys.readouterr().err
