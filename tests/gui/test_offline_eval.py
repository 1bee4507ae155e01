"""Compare page → Offline evaluation: ``memlab eval compare`` run in the real engine worker (tiny random LM,
real MiniLM), with progress, a table and a chart, stored in the open study; and cancel stops it."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_engine import engine_env, environment  # noqa: E402

pytest.importorskip("torch")
pytestmark = [pytest.mark.gui, pytest.mark.slow]
WAIT = 240_000


@pytest.fixture(scope="module")
def ctx(qapp, tmp_path_factory):
    root = tmp_path_factory.mktemp("offline-eval")
    env = engine_env(Path(os.environ.get("MEMLAB_TEST_MODELS", root)))
    with environment(env):
        from desktop.context import AppContext

        c = AppContext(settings_path=root / "settings.ini", data_dir=root / "data")
        yield c
        c.shutdown()


@pytest.fixture
def data(tmp_path):
    from engine.data.corpus.generator import generate_episodes
    from engine.data.episode_format import write_episodes

    path = tmp_path / "heldout.json"
    write_episodes(path, generate_episodes(3, seed=31))
    return path


def _tab(ctx, qtbot, data, systems):
    from PySide6.QtCore import Qt

    from desktop.pages.compare import ComparePage

    page = ComparePage(ctx)
    qtbot.addWidget(page)
    tab = page.offline
    tab.data.setText(str(data))
    for i in range(tab.systems.count()):
        item = tab.systems.item(i)
        item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in systems
                           else Qt.CheckState.Unchecked)
    return tab


def test_offline_evaluation_shows_the_table_and_stores_it_in_the_study(ctx, qtbot, data, tmp_path):
    from annotation.db import init_study
    from annotation.eval_reports import eval_reports

    study = tmp_path / "study.db"
    init_study(study).close()
    ctx.set_study(str(study))
    tab = _tab(ctx, qtbot, data, {"no-memory", "summary"})
    tab.limit.setValue(2)
    tab.samples.setValue(2)
    seen = []
    tab.progress.valueChanged.connect(seen.append)
    assert tab.run() is not None and not tab.run_button.isEnabled() and tab.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: tab.last is not None, timeout=WAIT)
    report = tab.last["report"]
    assert report["n"] == 2 and set(report["systems"]) == {"no-memory", "summary"}
    assert "S-Dist-1" in tab.result.toHtml() and not tab.chart.pixmap().isNull()
    assert seen and tab.run_button.isEnabled()
    qtbot.waitUntil(lambda: len(eval_reports(study)) == 1, timeout=30_000)


def test_cancel_stops_the_evaluation_and_keeps_what_finished(ctx, qtbot, data):
    tab = _tab(ctx, qtbot, data, {"no-memory"})
    tab.limit.setValue(3)
    tab.samples.setValue(0)
    tab.out_dir = lambda d: str(Path(d).parent / "cancelled-run")
    tab.run()
    tab.cancel()
    qtbot.waitUntil(lambda: tab.last is not None or "failed" in tab.status.text(), timeout=WAIT)
    assert tab.last is not None and tab.last["cancelled"] and tab.last["report"]["n"] < 3


def test_no_data_file_is_explained(ctx, qtbot, tmp_path):
    tab = _tab(ctx, qtbot, tmp_path / "missing.json", {"no-memory"})
    assert tab.run() is None and "missing.json" in tab.status.text()
