"""Annotate page: sign in, keyboard rating committed at once, resume, blind queue, every item form."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from PySide6.QtCore import Qt  # noqa: E402

from study_helpers import make_ctx, make_study  # noqa: E402

pytestmark = pytest.mark.gui


def _ratings(study_path):
    con = sqlite3.connect(study_path)
    try:
        return con.execute(
            "SELECT a.name, g.name, c.name, r.value, r.comment, r.seconds FROM ratings r"
            " JOIN annotators a ON a.id = r.annotator_id JOIN groups g ON g.id = r.group_id"
            " JOIN criteria c ON c.id = r.criterion_id ORDER BY r.id").fetchall()
    finally:
        con.close()


def _page(qtbot, root, study):
    from desktop.pages.annotate import AnnotatePage

    page = AnnotatePage(make_ctx(root, study))
    qtbot.addWidget(page)
    page.resize(1100, 720)
    page.show()
    return page


def _sign_in_by_form(qtbot, page, campaign, name, group):
    form = page.sign_in_panel
    form.select(campaign, name, group)
    qtbot.mouseClick(form.start, Qt.LeftButton)


def test_memory_campaign_rated_by_keyboard_is_committed_and_resumes(qtbot, tmp_path):
    study = make_study(tmp_path)
    page = _page(qtbot, tmp_path, study)
    _sign_in_by_form(qtbot, page, "memory-check", "Ada", "A")
    assert page.stack.currentWidget() is page.panel
    total = page.item.total
    assert total > 10
    assert page.panel.progress_label.text() == f"0 of {total} done"

    # The criterion's definition and pass/fail anchors are on screen with the item.
    card = page.cards[0]
    assert card.criterion.definition and card.criterion.definition in card.definition.text()
    assert "source turns" in card.anchors.text()  # MiSC-specific anchors, not the generic "fully meets"

    first_key = page.item.key
    qtbot.keyClick(page.panel, Qt.Key_P)
    rows = _ratings(study)
    assert len(rows) == 1 and rows[0][:4] == ("Ada", "A", page.item.criteria[0].name, 1)
    assert rows[0][5] is not None and rows[0][5] >= 0  # seconds spent recorded
    assert page.panel.progress_label.text() == f"1 of {total} done"
    assert "your rating: <b>pass</b>" in card.value_label.text()

    qtbot.keyClick(page.panel, Qt.Key_N)
    assert page.item.key != first_key
    qtbot.keyClick(page.panel, Qt.Key_F)
    assert _ratings(study)[-1][3] == 0
    qtbot.keyClick(page.panel, Qt.Key_N)
    third_key = page.item.key

    # Back shows the earlier item with my own value, and an edit is a new row (append-only).
    qtbot.keyClick(page.panel, Qt.Key_B)
    qtbot.keyClick(page.panel, Qt.Key_B)
    assert page.item.key == first_key
    assert page.cards[0].value == 1
    qtbot.keyClick(page.panel, Qt.Key_F)
    assert [r[3] for r in _ratings(study)] == [1, 0, 0]
    assert page.panel.progress_label.text() == f"2 of {total} done"

    # A fresh app on the same study resumes at the first unfinished item.
    again = _page(qtbot, tmp_path, study)
    assert again.sign_in_panel.name.currentData() == "Ada"  # remembered in the settings
    _sign_in_by_form(qtbot, again, "memory-check", "Ada", "A")
    assert again.item.key == third_key
    assert again.item.position == 3
    assert again.panel.progress_label.text() == f"2 of {total} done"


def test_likert_keys_rate_each_criterion_in_turn_and_comment_is_saved(qtbot, tmp_path, monkeypatch):
    study = make_study(tmp_path, campaigns=(("quality", "dataset"),))
    page = _page(qtbot, tmp_path, study)
    assert page.sign_in("quality", "Bo", "B")
    assert page.item.target == "session" and page.panel.item_view.kind == "session"
    names = [c.criterion.name for c in page.cards]
    assert names == ["consistency", "coherence"]
    assert "flawless" in page.cards[0].anchors.text()  # 1–5 anchors of Appendix F
    qtbot.keyClick(page.panel, Qt.Key_4)
    qtbot.keyClick(page.panel, Qt.Key_2)
    assert [(r[2], r[3]) for r in _ratings(study)] == [("consistency", 4), ("coherence", 2)]
    assert page.panel.progress_label.text().startswith("1 of ")
    # P on a Likert-only item is refused with a message, not stored.
    qtbot.keyClick(page.panel, Qt.Key_P)
    assert len(_ratings(study)) == 2 and "1–5" in page.panel.saved_label.text()

    # C asks for a comment; it is stored with the active criterion's rating (a new row).
    monkeypatch.setattr("desktop.pages.annotate.QInputDialog.getMultiLineText",
                        lambda *a, **k: ("speaker contradicts session 1", True))
    qtbot.keyClick(page.panel, Qt.Key_Up)
    qtbot.keyClick(page.panel, Qt.Key_C)
    last = _ratings(study)[-1]
    assert last[4] == "speaker contradicts session 1" and last[2] == "consistency" and last[3] == 4


def test_queue_is_blind_to_other_annotators(qtbot, tmp_path):
    from annotation.campaigns import add_annotator, create_campaign
    from annotation.ratings import rate

    study = make_study(tmp_path, campaigns=())
    create_campaign(study, "full", "memory", groups=3, overlap="full")
    add_annotator(study, "Ben", "B", "full")
    add_annotator(study, "Bea", "A", "full")
    page = _page(qtbot, tmp_path, study)
    assert page.sign_in("full", "Ada", "A")
    item = page.item
    rate(study, "full", "Ben", item.item_id, item.criteria[0].name, 1)
    rate(study, "full", "Bea", item.item_id, item.criteria[0].name, 0)
    page.show_index(page.index)  # reload the same item after the others rated it
    assert page.cards[0].value is None
    assert "not rated" in page.cards[0].value_label.text()
    shown = " ".join(w.text() for w in page.findChildren(type(page.panel.who)))
    assert "Ben" not in shown and "Bea" not in shown
    assert page.panel.progress_label.text().startswith("0 of ")

    # Ada cannot switch to another group of the same campaign.
    page.sign_out()
    assert not page.sign_in("full", "Ada", "B")
    assert "group A" in page.sign_in_panel.error.text()


def test_every_item_kind_has_its_own_form(qtbot, tmp_path):
    from annotation.campaigns import create_campaign

    study = make_study(tmp_path, campaigns=(("memory-check", "memory"),))
    create_campaign(study, "model", "model", groups=1)
    page = _page(qtbot, tmp_path, study)
    assert page.sign_in("memory-check", "Ada", "A")
    seen = {}
    for i in range(page.item.total):
        page.show_index(i)
        seen.setdefault(page.item.target, page.item)
        if len(seen) == 3:
            break
    view = page.panel.item_view
    for target, item in seen.items():
        page.show_index(item.position - 1)
        assert view.kind == target
        if target == "memory":
            assert item.content["memory"]["text"] in view.memory.memory_box.text()
            assert "Source session" in view.memory.source_header.text()
        elif target == "link":
            assert {item.content["newer"]["id"], item.content["older"]["id"]} <= set(view.pair.graph.drawn_nodes)
            assert "newer" in view.pair.pair_box.text() and "older" in view.pair.pair_box.text()
        else:
            assert item.content["utterance"]["text"] in view.tag.body.toPlainText()
            assert item.content["memory"]["text"] in view.tag.memory_box.text()
    page.sign_out()
    assert page.sign_in("model", "Ada", "A")
    assert view.kind == "episode"
    assert "Session 1" in view.transcript.body.toPlainText()


def _convai2_study(tmp_path, preset="dataset"):
    import json as _json

    from annotation.accounts import create_account
    from annotation.campaigns import create_campaign
    from annotation.db import init_study
    from annotation.importer import import_file

    src = tmp_path / "convai2.json"
    src.write_text(_json.dumps([{"persona": ["i love skiing in the alps.", "my dog is called rex."],
                                 "dialogue": [["__SILENCE__", "hi! do you ski?"], ["no, i swim.", "rex hates water."]]}]))
    path = tmp_path / "study.db"
    with init_study(path) as s:
        import_file(s, src)
        create_campaign(s, "persona", preset, groups=1)
        create_account(s, "ann")
    return path


def test_consistency_item_shows_the_persona_it_is_judged_against(qtbot, tmp_path):
    study = _convai2_study(tmp_path)
    page = _page(qtbot, tmp_path, study)
    assert page.sign_in("persona", "ann", "A")
    assert page.item.target == "session" and page.cards[0].criterion.name == "consistency"
    ctx = page.panel.item_view.transcript.context
    assert ctx.isVisible()
    assert "i love skiing in the alps." in ctx.toPlainText() and "given before the conversation" in ctx.toPlainText()


def test_persona_line_rated_as_memory_is_not_formed_in_session_1(qtbot, tmp_path):
    study = _convai2_study(tmp_path, preset="memory")
    page = _page(qtbot, tmp_path, study)
    assert page.sign_in("persona", "ann", "A")
    view = page.panel.item_view.memory
    assert page.item.target == "memory"
    assert "formed in session" not in view.memory_box.text()
    assert "persona line, given before the conversation" in view.memory_box.text()
    assert "not summarised from any turn" in view.source_header.text()


def test_typed_case_cannot_fork_a_queue_and_pin_is_checked(qtbot, tmp_path):
    from annotation.accounts import create_account, list_accounts, set_pin
    from annotation.db import StudyError

    study = make_study(tmp_path)
    with pytest.raises(StudyError, match="ignoring case"):
        create_account(study, "ada")
    set_pin(study, "Ada", "4711")
    page = _page(qtbot, tmp_path, study)
    assert [page.sign_in_panel.name.itemData(i) for i in range(page.sign_in_panel.name.count())] == \
        [a.name for a in list_accounts(study)]
    assert not page.sign_in("memory-check", "ADA", "A", pin="0000")
    assert "Wrong PIN" in page.sign_in_panel.error.text()
    assert page.sign_in("memory-check", "ADA", "A", pin="4711")
    assert page.annotator == "Ada"
    qtbot.keyClick(page.panel, Qt.Key_P)
    page.sign_out()
    assert page.sign_in("memory-check", " ada ", "A", pin="4711")
    assert page.panel.progress_label.text().startswith("1 of ")  # the same queue, not a new one
    assert len({r[0] for r in _ratings(study)}) == 1


def test_position_and_progress_read_differently_and_finished_queue_disables_next(qtbot, tmp_path):
    study = _convai2_study(tmp_path)
    page = _page(qtbot, tmp_path, study)
    assert page.sign_in("persona", "ann", "A")
    assert page.panel.position_label.text() == "Item 1 of 1"
    assert page.panel.progress_label.text() == "0 of 1 done"
    qtbot.keyClick(page.panel, Qt.Key_4)
    qtbot.keyClick(page.panel, Qt.Key_5)
    assert "N for the next item" in page.panel.saved_label.text()
    qtbot.keyClick(page.panel, Qt.Key_N)
    assert page.panel.position_label.text() == "Queue finished"
    assert page.panel.saved_label.text() == ""
    assert not page.panel.next_btn.isEnabled() and not page.panel.flag_btn.isEnabled()
    assert page.panel.back_btn.isEnabled()


def test_reviewer_sees_flags_and_cross_group_disagreement_after_close(qtbot, tmp_path):
    from annotation.accounts import create_account
    from annotation.campaigns import add_annotator, create_campaign
    from annotation.queue import next_item
    from annotation.ratings import rate
    from annotation.review import close_campaign

    study = make_study(tmp_path, campaigns=())
    create_campaign(study, "full", "memory", groups=2, overlap="full")
    add_annotator(study, "Ben", "A", "full")
    add_annotator(study, "Bea", "B", "full")
    create_account(study, "Rita", role="reviewer")
    it = next_item(study, "full", "Ben")
    crit = it.criteria[0].name
    rate(study, "full", "Ben", it.item_id, crit, "pass")
    rate(study, "full", "Bea", it.item_id, crit, "fail")
    page = _page(qtbot, tmp_path, study)
    assert page.sign_in("full", "Bea", "B")
    page.show_index(page.item.position - 1)
    assert page.flag("the memory is cut off")
    page.sign_out()
    assert not page.sign_in("full", "Rita", "")
    assert "still open" in page.sign_in_panel.error.text()
    close_campaign(study, "full")
    assert page.sign_in("full", "Rita", "")
    panel = page.review_panel
    assert page.stack.currentWidget() is panel
    reasons = [panel.table.item(r, 3).text() for r in range(panel.table.rowCount())]
    assert "groups disagree" in " ".join(reasons) and "flagged" in " ".join(reasons)
    row = next(r for r in range(panel.table.rowCount()) if "disagree" in panel.table.item(r, 3).text())
    panel.table.selectRow(row)
    assert "A: pass" in panel.table.item(row, 2).text() and "B: fail" in panel.table.item(row, 2).text()
    assert len(panel.give("flag")) == 2
    with pytest.raises(Exception):
        rate(study, "full", "Ben", it.item_id, crit, "pass")  # rating has ended
