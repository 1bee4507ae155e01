"""Studies page: create a study, import with errors, campaign from saved chats, annotators,
progress, agreement tables and chart, and the four report formats."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_helpers import make_ctx, make_study  # noqa: E402

pytestmark = pytest.mark.gui
CONVAI2 = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "convai2" / "personachat_valid.json"


def _page(qtbot, root, study=None):
    from desktop.pages.studies import StudiesPage

    page = StudiesPage(make_ctx(root, study))
    qtbot.addWidget(page)
    page.resize(1100, 760)
    page.show()
    return page


def _wait(qtbot, page, timeout=60_000):
    qtbot.waitUntil(lambda: not page.busy(), timeout=timeout)


def test_create_study_import_files_with_progress_and_error_list(qtbot, tmp_path):
    from engine.data.corpus.generator import generate_episodes
    from engine.data.episode_format import episode_to_dict, write_episodes

    page = _page(qtbot, tmp_path)
    assert not page.import_btn.isEnabled()
    study = tmp_path / "new-study.db"
    assert page.create_study(str(study))
    assert page.ctx.study_path == str(study) and study.exists()
    assert page.import_btn.isEnabled()

    good = tmp_path / "starter.json"
    write_episodes(good, generate_episodes(3, seed=5))
    bad_doc = episode_to_dict(generate_episodes(1, seed=9)[0])
    bad_doc["id"] = "broken-one"
    bad_doc["sessions"][0]["turns"][1]["speaker"] = "Nobody"
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps([bad_doc]), encoding="utf-8")

    progress_seen = []
    page.progress.valueChanged.connect(progress_seen.append)
    with qtbot.waitSignal(page.imported, timeout=60_000):
        page.import_files([str(good), str(bad)])
    _wait(qtbot, page)
    assert progress_seen and max(progress_seen) == 2000  # two files, each 0..1000
    assert len(page.last_errors) == 1
    err = page.last_errors[0]
    assert "broken.json" in err and "broken-one" in err and "sessions[0].turns[1].speaker" in err
    assert page.errors_list.count() == 2
    assert page.counts_label.text().startswith("3 episodes")
    con = sqlite3.connect(study)
    assert con.execute("SELECT COUNT(*) FROM episodes WHERE id = 'broken-one'").fetchone()[0] == 0
    con.close()
    assert "failed" in page.status_label.text()

    if CONVAI2.exists():  # real ConvAI2 dialogues (a slice) through the same import path
        data = json.loads(CONVAI2.read_text(encoding="utf-8"))[:4]
        part = tmp_path / "personachat.json"
        part.write_text(json.dumps(data), encoding="utf-8")
        with qtbot.waitSignal(page.imported, timeout=60_000):
            page.import_files([str(part)], "convai2")
        _wait(qtbot, page)
        assert not page.last_errors
        sources = [page.sources_table.item(r, 0).text() for r in range(page.sources_table.rowCount())]
        assert len(sources) == 2


def test_saved_chats_become_a_campaign_annotators_progress_and_agreement(qtbot, tmp_path):
    from annotation.importer import import_episodes
    from annotation.queue import next_item
    from annotation.ratings import rate
    from engine.data.corpus.generator import generate_episodes

    study = make_study(tmp_path, episodes=2, campaigns=())
    chats = generate_episodes(2, seed=11)
    for i, ep in enumerate(chats):
        ep.id, ep.source = f"chat-{i}", "live-chat"
    import_episodes(study, chats, file="live chats")
    page = _page(qtbot, tmp_path, study)
    labels = [page.c_source.itemText(i) for i in range(page.c_source.count())]
    assert "saved chats (2)" in labels

    page.c_name.setText("chats-model")
    page.c_preset.setCurrentIndex(page.c_preset.findData("model"))
    page.c_source.setCurrentIndex(page.c_source.findData("live-chat"))
    page.c_create.click()
    _wait(qtbot, page)
    assert page.campaign_combo.currentText() == "chats-model"
    assert page.campaign_table.rowCount() == 1
    assert page.campaign_table.item(0, 2).text() == "2"  # one item per saved chat (episode unit)

    # A memory campaign over everything, three groups with one annotator each.
    page.create_campaign("mem", "memory", source=None, groups=3, overlap="split")
    _wait(qtbot, page)
    assert page.campaign_combo.currentText() == "mem"
    for name, group in (("Ada", "A"), ("Ben", "B"), ("Cy", "C")):
        page.a_name.setText(name)
        page.a_group.setCurrentText(group)
        page.a_add.click()
    assert page.member_table.rowCount() == 3
    total = int(page.member_table.item(0, 2).text().split("/")[1].split()[0])
    for name in ("Ada", "Ben", "Cy"):
        for k in range(6):
            item = next_item(study, "mem", name)
            rate(study, "mem", name, item.item_id, item.criteria[0].name, (k + len(name)) % 3 != 0)
    page.refresh_progress()
    assert page.member_table.item(0, 2).text().startswith(f"6 / {total}")
    assert page.group_progress_table.item(0, 2).text().startswith(f"6 / {total}")

    page.bootstrap.setValue(200)
    with qtbot.waitSignal(page.agreement_ready, timeout=60_000) as got:
        page.compute_agreement()
    _wait(qtbot, page)
    data = got.args[0]
    assert page.agreement_table.rowCount() == len(data["agreement"]["criteria"]) == 3
    ours = data["agreement"]["criteria"]["memory_summarization"]["cross_group_agreement"]
    cell = page.agreement_table.item(0, 3).text()
    assert cell == ("n/a" if ours is None else f"{ours:.1%}")
    assert [c.name for c in page.chart.plotted] == ["Memory Summarization", "Memory Linking", "Memory Tagging"]
    assert page.chart.plotted[0].group_values["A"] == data["agreement"]["criteria"]["memory_summarization"]["groups"]["A"]["pass_rate"]



def test_bad_requests_are_explained_not_crashes(qtbot, tmp_path):
    study = make_study(tmp_path)
    page = _page(qtbot, tmp_path, study)
    assert page.create_campaign("", "memory") is None
    assert "name" in page.status_label.text()
    page.create_campaign("memory-check", "memory", source=None)  # name already taken
    _wait(qtbot, page)
    assert "already exists" in page.status_label.text()
    page.campaign_combo.setCurrentText("memory-check")
    assert page.add_annotator("Ada", "A")
    assert not page.add_annotator("Ada", "B")
    assert "one group per campaign" in page.status_label.text()
    assert not page.open_study(str(tmp_path / "settings.ini"))


@pytest.mark.slow
def test_report_exported_in_four_formats_like_the_cli(qtbot, tmp_path):
    from annotation.campaigns import add_annotator
    from annotation.queue import next_item
    from annotation.ratings import rate

    study = make_study(tmp_path, campaigns=(("mem", "memory"),))
    for name, group in (("Ada", "A"), ("Ben", "B"), ("Cy", "C")):
        add_annotator(study, name, group, "mem")
        for k in range(8):
            item = next_item(study, "mem", name)
            rate(study, "mem", name, item.item_id, item.criteria[0].name, k % 3 != 0)
    page = _page(qtbot, tmp_path, study)
    page.campaign_combo.setCurrentText("mem")
    page.bootstrap.setValue(100)
    for fmt in ("html", "pdf", "csv", "json"):
        out = tmp_path / f"report.{fmt}"
        with qtbot.waitSignal(page.exported, timeout=120_000):
            page.export_report(str(out))
        _wait(qtbot, page)
        assert out.stat().st_size > 200, fmt
    assert json.loads((tmp_path / "report.json").read_text())["facts"]["campaign"] == "mem"
    assert (tmp_path / "report.pdf").read_bytes()[:4] == b"%PDF"
    header = (tmp_path / "report.csv").read_text().splitlines()[0]
    assert "annotator" in header and "value" in header


def _rated_study(tmp_path):
    from annotation.campaigns import add_annotator
    from annotation.queue import next_item
    from annotation.ratings import rate

    study = make_study(tmp_path, campaigns=(("mem", "memory"),))
    for name, group in (("Ada", "A"), ("Ben", "B"), ("Cy", "C"), ("Dee", "A")):
        add_annotator(study, name, group, "mem")
        for k in range(10):
            item = next_item(study, "mem", name)
            for c in item.criteria:
                rate(study, "mem", name, item.item_id, c.name, (k + len(name)) % 3 != 0)
    return study


def test_agreement_table_fits_the_default_window_with_notes_in_tooltips(qtbot, tmp_path):
    from desktop.main_window import MainWindow  # noqa: F401  (the default size below is its restore size)

    study = _rated_study(tmp_path)
    page = _page(qtbot, tmp_path, study)
    page.resize(1200 - 140, 800 - 90)  # the main window's default size minus sidebar, menu and status bar
    page.campaign_combo.setCurrentText("mem")
    page.bootstrap.setValue(50)
    page.tabs.setCurrentIndex(3)
    page.compute_agreement()
    _wait(qtbot, page)
    qtbot.wait(50)
    t = page.agreement_table
    assert t.horizontalHeader().length() <= t.viewport().width() + 1  # no column cut off, no scrolling
    fleiss = next(c for c in range(t.columnCount()) if t.horizontalHeaderItem(c).text() == "Fleiss κ")
    cell = t.item(0, fleiss)
    if cell.text().endswith("*"):  # the long reason lives in the tooltip and the note line, not the cell
        assert len(cell.toolTip()) > 20 and cell.toolTip() in page.agreement_note.text()
    assert all(t.horizontalHeaderItem(c).text() for c in range(t.columnCount()))
    assert any(t.horizontalHeaderItem(c).text().startswith("κ A|B") for c in range(t.columnCount()))
    for c in range(t.columnCount()):  # every cell shows its whole text
        for r in range(t.rowCount()):
            fm = t.fontMetrics()
            assert fm.horizontalAdvance(t.item(r, c).text()) <= t.columnWidth(c), (r, c, t.item(r, c).text())


def test_owner_creates_accounts_case_insensitively_and_closes_rating(qtbot, tmp_path):
    from annotation.accounts import get_account
    from annotation.review import is_closed

    study = make_study(tmp_path)
    page = _page(qtbot, tmp_path, study)
    page.campaign_combo.setCurrentText("memory-check")
    assert page.add_annotator("ada", "A")  # the existing account "Ada", not a second one
    assert "existing account 'Ada'" in page.status_label.text()
    assert page.add_annotator("Rita", role="reviewer", pin="1234")
    assert get_account(study, "rita").role == "reviewer" and get_account(study, "Rita").has_pin
    names = [page.accounts_table.item(r, 0).text() for r in range(page.accounts_table.rowCount())]
    assert names.count("Ada") == 1 and "Rita" in names and "ada" not in names
    assert page.close_rating()
    assert is_closed(study, "memory-check")
    row = [page.campaign_table.item(0, c).text() for c in range(page.campaign_table.columnCount())]
    assert any(x.startswith("closed ") and "UTC" in x for x in row)
    assert not any("T" in x and x[:4].isdigit() and "-" in x for x in row)  # dates shown as dates


def test_long_status_messages_are_elided_with_the_full_text_as_tooltip(qtbot, tmp_path):
    from desktop.app import create_window

    ctx, window = create_window(None, settings_path=tmp_path / "s.ini", data_dir=tmp_path / "data")
    qtbot.addWidget(window)
    window.resize(1200, 800)
    window.show()
    long = "Agreement for memory-round-1: 434 ratings on 170 items (1000 bootstrap resamples). " * 3
    ctx.status(long)
    shown = window.statusBar().currentMessage()
    assert shown.endswith("…") and len(shown) < len(long)
    assert window.statusBar().toolTip() == long


def test_import_can_be_cancelled_and_writes_nothing(qtbot, tmp_path):
    from annotation.db import open_study
    from desktop.pages.studies import import_files_job
    from engine.data.corpus.generator import generate_episodes
    from engine.data.episode_format import write_episodes

    study = make_study(tmp_path, campaigns=())
    with open_study(study) as s:
        before = s.db["episodes"].count
    files = [str(write_episodes(tmp_path / f"f{i}.json", generate_episodes(2, seed=20 + i))) for i in range(2)]
    calls = []
    out = import_files_job(str(study), files, "auto", cancel=lambda: calls.append(1) or len(calls) > 1)
    assert "cancelled" in out[0][1] and "skipped" in out[1][1]
    with open_study(study) as s:
        assert s.db["episodes"].count == before
    page = _page(qtbot, tmp_path, study)
    page.import_files(files)
    assert page.cancel_btn.isVisible()
    page.cancel_import()
    _wait(qtbot, page)
    assert not page.cancel_btn.isVisible()
