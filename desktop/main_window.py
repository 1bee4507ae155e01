"""The main window: a sidebar of six pages (Ctrl+1…6), a study menu, and a status bar that says
which device and model the engine uses and why (docs/architecture.md, "Models, offline first": never a silent fallback)."""

from __future__ import annotations

import html
import importlib

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QMainWindow, QStackedWidget,
                               QVBoxLayout, QWidget)

from desktop.pages import PAGES


class MissingPage(QWidget):
    """Shown when a page's module cannot be imported (says why)."""

    def __init__(self, title: str, error: str):
        super().__init__()
        box = QVBoxLayout(self)
        label = QLabel(f"<h3>{html.escape(title)} is not available</h3><p>{html.escape(error)}</p>")
        label.setWordWrap(True)
        box.addWidget(label)
        box.addStretch(1)


class MainWindow(QMainWindow):
    def __init__(self, ctx):
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle("MemLab")
        self.pages: dict[str, QWidget] = {}
        self.keys = [p[0] for p in PAGES]

        self.sidebar = QListWidget()
        self.sidebar.setFixedWidth(120)
        for i, (key, title, _m, _c) in enumerate(PAGES):
            self.sidebar.addItem(title)
            self.sidebar.item(i).setToolTip(f"{title} (Ctrl+{i + 1})")
        self.sidebar.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.sidebar.setStyleSheet("QListWidget { font-size: 14px; } QListWidget::item { padding: 8px 6px; }")
        self.stack = QStackedWidget()
        self._placeholders = {}
        for key, *_ in PAGES:
            ph = QWidget()
            self._placeholders[key] = ph
            self.stack.addWidget(ph)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(4, 4, 4, 4)
        row.addWidget(self.sidebar)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.sidebar.currentRowChanged.connect(self._on_row)

        for i, (key, title, *_r) in enumerate(PAGES):
            act = QAction(title, self)
            act.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            act.triggered.connect(lambda _=False, k=key: self.show_page(k))
            self.addAction(act)
        self._build_menu()
        self._build_status()

        ctx.navigate_requested.connect(self._navigate)
        ctx.status_message.connect(self.show_status)
        ctx.study_changed.connect(self._on_study)
        ctx.engine_info_changed.connect(self._on_engine_info)
        self._on_study(ctx.study_path or "")
        self.show_page("chat")

    # -- pages ---------------------------------------------------------------------------------
    def page(self, key: str) -> QWidget:
        """The page for ``key``, built on first use."""
        if key not in self.pages:
            _k, title, module, cls = next(p for p in PAGES if p[0] == key)
            try:
                widget = getattr(importlib.import_module(module), cls)(self.ctx)
            except (ImportError, AttributeError) as e:
                widget = MissingPage(title, f"{module}.{cls}: {e}")
            self.pages[key] = widget
            ph = self._placeholders[key]
            i = self.stack.indexOf(ph)
            self.stack.insertWidget(i, widget)
            self.stack.removeWidget(ph)
            ph.deleteLater()
        return self.pages[key]

    def show_page(self, key: str) -> QWidget:
        row = self.keys.index(key)
        if self.sidebar.currentRow() != row:
            self.sidebar.setCurrentRow(row)  # → _on_row
        else:
            self._on_row(row)
        return self.pages[key]

    def current_key(self) -> str:
        return self.keys[self.sidebar.currentRow()]

    def _on_row(self, row: int):
        if row < 0:
            return
        key = self.keys[row]
        w = self.page(key)
        self.stack.setCurrentWidget(w)
        if hasattr(w, "on_shown"):
            w.on_shown()

    def _navigate(self, key: str, payload):
        w = self.show_page(key)
        if payload is not None and hasattr(w, "navigate_to"):
            w.navigate_to(payload)

    # -- menu ----------------------------------------------------------------------------------
    def _build_menu(self):
        menu = self.menuBar().addMenu("&Study")
        open_act = QAction("&Open study…", self)
        open_act.setShortcut(QKeySequence.StandardKey.Open)
        open_act.triggered.connect(self._ask_open_study)
        menu.addAction(open_act)
        self.recent_menu = menu.addMenu("Recent studies")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        close_act = QAction("&Close study", self)
        close_act.triggered.connect(lambda: self.ctx.set_study(None))
        menu.addAction(close_act)
        menu.addSeparator()
        quit_act = QAction("&Quit", self)
        quit_act.setShortcut(QKeySequence.StandardKey.Quit)
        quit_act.triggered.connect(self.close)
        menu.addAction(quit_act)

    def _fill_recent(self):
        self.recent_menu.clear()
        recent = self.ctx.recent_studies()
        if not recent:
            a = self.recent_menu.addAction("(none yet)")
            a.setEnabled(False)
        for path in recent:
            a = self.recent_menu.addAction(path)
            a.triggered.connect(lambda _=False, p=path: self.ctx.set_study(p))

    def _ask_open_study(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open study", "", "MemLab study or annotator package (*.db *.sqlite *.memlab);;All files (*)")
        if path:
            self.ctx.set_study(path)

    def _on_study(self, path: str):
        self.study_label.setText(f"study: {path}" if path else "no study open")
        self.setWindowTitle(f"MemLab — {path}" if path else "MemLab")

    # -- status bar ------------------------------------------------------------------------------
    def _build_status(self):
        bar = self.statusBar()
        self.engine_label = QLabel()
        self.device_label = QLabel()
        self.model_label = QLabel()
        self.study_label = QLabel()
        for w in (self.engine_label, self.device_label, self.model_label, self.study_label):
            w.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            bar.addPermanentWidget(w)
        if self.ctx.engine_available:
            self.engine_label.setText("engine: not started")
            self.device_label.setText("device: (decided when models load)")
        else:
            self.engine_label.setText("engine not installed (annotation only)")
        self.ctx.engine_state_changed.connect(self._on_engine_state)

    def show_status(self, message: str, timeout_ms: int = 8000) -> None:
        """A status message elided to the room the permanent labels leave ("…", never cut mid-word
        without a mark); the full text is the status bar's tooltip."""
        bar = self.statusBar()
        taken = sum(w.sizeHint().width() + 8 for w in (self.engine_label, self.device_label, self.model_label,
                                                        self.study_label) if w.isVisible())
        room = max(bar.width() - taken - 24, 120)
        bar.showMessage(bar.fontMetrics().elidedText(message, Qt.TextElideMode.ElideRight, room), timeout_ms)
        bar.setToolTip(message)

    def _on_engine_state(self, state: str, detail: str):
        self.engine_label.setText(f"engine: {state}")
        self.engine_label.setToolTip(detail)
        if state in ("restarting", "failed") and detail:
            self.statusBar().showMessage(detail, 15000)

    def _on_engine_info(self, info: dict):
        lm = info.get("lm") or {}
        plan = lm.get("plan") or {}
        if lm.get("server"):
            srv = lm["server"]
            self.device_label.setText(f"device: generator server {srv.get('url', '')}")
            self.device_label.setToolTip("Why:\n" + "\n".join(plan.get("reasons") or []))
        elif plan:
            q = ", 4-bit" if plan.get("load_in_4bit") else ""
            reasons = plan.get("reasons") or []
            why = next((r for r in reasons if not r.startswith(("loaded", "the tokenizer"))), "")
            short = f" — {why.split(';')[0].split(':')[0]}" if why else ""
            self.device_label.setText(f"device: {plan.get('device')} {plan.get('dtype')}{q}{short}")
            self.device_label.setToolTip("Why:\n" + "\n".join(reasons))
        elif "cuda" in info:
            self.device_label.setText("device: " + ("CUDA " + info.get("gpu", "") if info.get("cuda") else "CPU (no CUDA)"))
        if lm:
            self.model_label.setText("model: " + str(lm.get("name", "")).rstrip("/").split("/")[-1])
            self.model_label.setToolTip(str(lm.get("name", "")))

    # -- window state ------------------------------------------------------------------------------
    def restore_geometry(self):
        geo = self.ctx.settings.value("window/geometry")
        if isinstance(geo, QByteArray) and not geo.isEmpty():
            self.restoreGeometry(geo)
        else:
            self.resize(1200, 800)

    def closeEvent(self, event):
        for w in self.pages.values():
            if hasattr(w, "can_close") and not w.can_close():
                event.ignore()
                return
        self.ctx.settings.setValue("window/geometry", self.saveGeometry())
        self.ctx.settings.setValue("window/page", self.current_key())
        self.ctx.settings.sync()
        self.ctx.shutdown()
        event.accept()
