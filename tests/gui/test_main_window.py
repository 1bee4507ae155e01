"""Main window: no torch on startup, six pages by Ctrl+1..6, settings and geometry remembered,
recent studies, and the 'engine not installed' note when torch is missing."""

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


def test_opening_the_window_and_every_page_imports_no_torch(tmp_path):
    code = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "import desktop.app\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        f"ctx, w = desktop.app.create_window(settings_path={str(tmp_path / 's.ini')!r}, data_dir={str(tmp_path)!r})\n"
        "w.show(); app.processEvents()\n"
        "for k in ('chat', 'compare', 'memory', 'models'): w.show_page(k)\n"
        "app.processEvents()\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules, type(w.page('memory')).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "MemoryPage"]


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLAB_NO_ENGINE", "1")
    from desktop.app import create_window

    ctx, w = create_window(settings_path=tmp_path / "settings.ini", data_dir=tmp_path / "data")
    qtbot.addWidget(w)
    w.show()
    return ctx, w


def test_ctrl_number_switches_pages(window, qtbot):
    ctx, w = window
    for n, key in [(3, "memory"), (6, "models"), (2, "compare"), (1, "chat")]:
        qtbot.keyClick(w, Qt.Key(Qt.Key.Key_0 + n), Qt.KeyboardModifier.ControlModifier)
        assert w.current_key() == key
        assert w.stack.currentWidget() is w.pages[key]


def test_without_torch_the_chat_pages_say_the_engine_is_not_installed(window):
    ctx, w = window
    chat = w.page("chat")
    assert chat.note.isVisible() and "engine is not installed" in chat.note.text()
    assert not chat.new_chat_button.isEnabled() and not chat.send_button.isEnabled()
    compare = w.show_page("compare")
    assert "engine is not installed" in compare.note.text() and not compare.start_button.isEnabled()
    assert "engine not installed" in w.engine_label.text()
    models = w.show_page("models")
    assert not models.prepare_button.isEnabled()


def test_geometry_page_and_recent_studies_are_remembered(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLAB_NO_ENGINE", "1")
    from desktop.app import create_window

    settings = tmp_path / "settings.ini"
    study = tmp_path / "study.db"
    study.write_bytes(b"")
    ctx, w = create_window(settings_path=settings, data_dir=tmp_path)
    qtbot.addWidget(w)
    w.show()
    w.show_page("models")
    w.resize(760, 540)
    size = (w.width(), w.height())
    assert size != (1200, 800)
    ctx.set_study(study)
    ctx.set_study(tmp_path / "other.db")
    assert ctx.recent_studies()[:2] == [str(tmp_path / "other.db"), str(study)]
    w.close()

    ctx2, w2 = create_window(settings_path=settings, data_dir=tmp_path)
    qtbot.addWidget(w2)
    screen_w = w2.screen().availableGeometry().width()  # restoreGeometry keeps a window on its screen
    assert abs(w2.width() - min(size[0], screen_w)) <= 4 and w2.height() == size[1]
    assert w2.current_key() == "models"
    assert ctx2.recent_studies()[0] == str(tmp_path / "other.db")
    assert "other.db" not in (ctx2.study_path or "")  # the last study is reopened only if the file exists


def test_a_long_session_of_qt_calls_does_not_abort_the_interpreter():
    """PySide6 6.12 on CPython 3.11 drops a reference to None per void Qt call (desktop.qt_compat);
    without the work-around this aborts with 'none_dealloc' after a few thousand calls."""
    code = (
        "import os\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "import desktop\n"
        "from PySide6.QtWidgets import QApplication, QLabel\n"
        "app = QApplication([])\n"
        "label = QLabel()\n"
        "for i in range(30000):\n"
        "    label.setText(str(i))\n"
        "    app.processEvents()\n"
        "print(label.text())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "29999"


def test_the_none_work_around_targets_only_affected_versions():
    from desktop.qt_compat import affected

    assert affected("6.12.0", (3, 11)) and affected("6.13.1", (3, 10))
    assert not affected("6.11.3", (3, 11)) and not affected("6.12.0", (3, 12))
