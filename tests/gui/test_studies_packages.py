"""Studies page: "Export annotator package…" and "Merge packages…" (issue 14 §4)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_helpers import make_ctx, make_study  # noqa: E402

pytestmark = pytest.mark.gui


def test_export_a_package_rate_it_and_merge_it_back(qtbot, tmp_path):
    from annotation.campaigns import add_annotator
    from annotation.queue import next_item
    from annotation.ratings import rate
    from desktop.pages.studies import StudiesPage

    study = make_study(tmp_path)
    add_annotator(study, "Ada", "A", "memory-check")
    page = StudiesPage(make_ctx(tmp_path, study))
    qtbot.addWidget(page)
    page.show()
    assert page.pkg_export_btn.isEnabled() and page.pkg_merge_btn.isEnabled()
    pkg = tmp_path / "Ada.memlab"
    page.export_package("Ada", str(pkg))
    qtbot.waitUntil(lambda: not page.busy(), timeout=60_000)
    assert pkg.exists() and "Wrote" in page.status_label.text()

    item = next_item(pkg, "memory-check", "Ada")             # Ada rates offline in her package
    rate(pkg, "memory-check", "Ada", item.item_id, item.criteria[0].name, 1)
    page.merge_packages([str(pkg)])
    qtbot.waitUntil(lambda: not page.busy(), timeout=60_000)
    assert "Ada (group A): 1 rating(s) added" in page.status_label.text()
    page.merge_packages([str(pkg)])
    qtbot.waitUntil(lambda: not page.busy(), timeout=60_000)
    assert "0 rating(s) added" in page.status_label.text()

    page.merge_packages([str(study)])                       # not a package: said, nothing written
    qtbot.waitUntil(lambda: not page.busy(), timeout=60_000)
    assert "not an annotator package" in page.status_label.text()
