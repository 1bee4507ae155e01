"""Studies: the study owner's page — data, campaigns, annotators, progress, agreement, reports.

Everything calls the same public functions as ``memlab study …`` (:mod:`annotation.cli`):
:func:`annotation.importer.import_file`, :func:`annotation.campaigns.create_campaign` /
:func:`~annotation.campaigns.add_annotator`, :func:`annotation.report.report_data` (agreement per
MiSC §5.1 plus Krippendorff's α, Fleiss' κ, pairwise κ) and :func:`annotation.report.write_report`.
Imports, campaign creation, agreement and exports run on the thread pool (each opens its own
SQLite connection), so the window never freezes; the progress bar follows their callbacks.
"""

from __future__ import annotations

import html
import os
import threading
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from annotation.dates import format_date
from desktop import background

IMPORT_FORMATS = ("auto", "memlab", "convai2", "locomo", "misc")
PRESETS = (("memory", "Memory — summarisation, linking, tagging (pass/fail)"),
           ("dataset", "Dataset — consistency, coherence (1–5)"),
           ("model", "Model — humanness, engagingness, memorability (1–5)"))
LIVE_CHAT = "live-chat"
REPORT_FORMATS = ("html", "pdf", "csv", "json")
MAX_COLUMN_WIDTH = 340


def _esc(text) -> str:
    return html.escape(str(text or ""), quote=False)


def fill_table(table: QTableWidget, head: list[str], rows: list[list], tips: list[list] | None = None,
               head_tips: list[str] | None = None, *, fit: bool = False) -> None:
    """Fill ``table``; every cell's full text (or ``tips``) is its tooltip. ``fit``: share the
    width between the columns (no horizontal scrolling) instead of sizing them to their content."""
    table.clear()
    table.setColumnCount(len(head))
    table.setRowCount(len(rows))
    table.setHorizontalHeaderLabels(head)
    for c, tip in enumerate(head_tips or []):
        if tip and table.horizontalHeaderItem(c):
            table.horizontalHeaderItem(c).setToolTip(tip)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            item = QTableWidgetItem(str(value))
            item.setFlags(item.flags() & ~Qt.ItemIsEditable)
            item.setToolTip(str(tips[r][c]) if tips and tips[r][c] else str(value))
            table.setItem(r, c, item)
    hh = table.horizontalHeader()
    if fit:
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        hh.setStretchLastSection(False)
        return
    hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    table.resizeColumnsToContents()
    for c in range(len(head)):  # long notes are cut (full text in the tooltip), not a page-wide column
        table.setColumnWidth(c, min(table.columnWidth(c), MAX_COLUMN_WIDTH))
    hh.setStretchLastSection(True)


def _table() -> QTableWidget:
    t = QTableWidget()
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QTableWidget.NoEditTriggers)
    t.setAlternatingRowColors(True)
    t.setWordWrap(False)
    return t


# --- work done on the thread pool (plain functions: each opens its own connection) -------------
def import_files_job(study_path: str, files: list[str], fmt: str, progress=None, cancel=None) -> list[tuple[str, object]]:
    """Import each file all-or-nothing (streamed; progress in bytes); returns ``(file, ImportResult |
    error message)`` per file. ``cancel()`` true stops the file being imported (nothing of it is
    written) and skips the rest."""
    from annotation.db import StudyError
    from annotation.importer import import_file
    from engine.data.errors import DataFormatError

    out = []
    n = len(files)
    for i, f in enumerate(files):
        def step(done, total, i=i):
            if progress:
                progress(i * 1000 + int(1000 * done / max(total, 1)), n * 1000)
        if cancel is not None and cancel():
            out.append((f, f"{f}: skipped (import cancelled)"))
            continue
        try:
            out.append((f, import_file(study_path, f, fmt, progress=step, cancel=cancel)))
        except (DataFormatError, StudyError, OSError) as e:
            out.append((f, str(e)))
        step(1, 1)
    return out


def agreement_job(study_path: str, campaign: str, bootstrap: int, progress=None) -> dict:
    from annotation.report import report_data

    return report_data(study_path, campaign, bootstrap=bootstrap, progress=progress)


def chart_figures(data: dict) -> list:
    """The numbers of :func:`annotation.report.report_data` that the agreement chart draws."""
    from desktop.widgets.charts import CriterionFigures

    labels = {c["name"]: c["label"] for c in data["criteria"]}
    out = []
    for name, c in data["agreement"]["criteria"].items():
        key = "mean" if c["scale"] == "likert" else "pass_rate"
        out.append(CriterionFigures(
            labels.get(name, name), "likert" if c["scale"] == "likert" else "pass_fail",
            {g: s.get(key) for g, s in c["groups"].items()},
            c["cross_group_agreement"], c["krippendorff_alpha"], c["fleiss_kappa"]))
    return out


class StudiesPage(QWidget):
    """``busy_changed`` fires when background work starts/stops; ``agreement_ready`` with report data."""

    busy_changed = Signal(bool)
    agreement_ready = Signal(dict)
    imported = Signal(list)
    exported = Signal(str)

    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self._study = None
        self._tasks = 0
        self.report = None
        self.last_errors: list[str] = []

        # study bar
        self.study_label = QLabel()
        self.study_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.new_btn = QPushButton("New study…")
        self.open_btn = QPushButton("Open study…")
        self.campaign_combo = QComboBox()
        self.campaign_combo.setMinimumWidth(180)
        bar = QHBoxLayout()
        bar.addWidget(self.study_label, 1)
        bar.addWidget(QLabel("Campaign:"))
        bar.addWidget(self.campaign_combo)
        bar.addWidget(self.new_btn)
        bar.addWidget(self.open_btn)

        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.cancel_btn = QPushButton("Cancel import")
        self.cancel_btn.setVisible(False)
        self.cancel_btn.setToolTip("Stop the import: the file being read is rolled back, nothing of it is written")
        self._cancel = threading.Event()
        self.cancel_btn.clicked.connect(self.cancel_import)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)

        self.tabs = QTabWidget()
        # room below the baseline so tab labels keep their descenders ("Campaigns", not "Campaiqns")
        self.tabs.setStyleSheet("QTabBar::tab { padding: 5px 12px 7px 12px; }")
        self.tabs.addTab(self._build_data_tab(), "Data")
        self.tabs.addTab(self._build_campaign_tab(), "Campaigns")
        self.tabs.addTab(self._build_people_tab(), "Annotators && progress")
        self.tabs.addTab(self._build_agreement_tab(), "Agreement && report")

        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.tabs, 1)
        prow = QHBoxLayout()
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.cancel_btn)
        lay.addLayout(prow)
        lay.addWidget(self.status_label)

        self.new_btn.clicked.connect(self._ask_new)
        self.open_btn.clicked.connect(self._ask_open)
        self.campaign_combo.currentTextChanged.connect(self._on_campaign)
        ctx.study_changed.connect(self._on_study)
        self._on_study(ctx.study_path or "")

    # -- tabs ----------------------------------------------------------------------------------
    def _build_data_tab(self) -> QWidget:
        w = QWidget()
        self.import_btn = QPushButton("Import files…")
        self.format_combo = QComboBox()
        self.format_combo.addItems(IMPORT_FORMATS)
        row = QHBoxLayout()
        row.addWidget(self.import_btn)
        self.selfplay_btn = QPushButton("Import self-play…")
        self.selfplay_btn.setToolTip("memlab selfplay episodes → a model-quality campaign (Humanness, Engagingness, "
                                     "Memorability; EMMA §5.3)")
        row.addWidget(self.selfplay_btn)
        row.addWidget(QLabel("Format:"))
        row.addWidget(self.format_combo)
        hint = QLabel("MiSC-shaped memlab-episode/1 JSON, ConvAI2 (PersonaChat) or LoCoMo. Each file is checked "
                      "first and imported all-or-nothing; errors name the file, record and field.")
        hint.setWordWrap(True)
        row.addWidget(hint, 1)
        self.counts_label = QLabel()
        self.sources_table = _table()
        self.errors_list = QListWidget()
        self.errors_list.setWordWrap(True)
        lay = QVBoxLayout(w)
        lay.addLayout(row)
        lay.addWidget(self.counts_label)
        lay.addWidget(QLabel("<b>Episodes by source</b> (live-chat = chats saved from the Chat page)"))
        lay.addWidget(self.sources_table, 1)
        lay.addWidget(QLabel("<b>Import log</b>"))
        lay.addWidget(self.errors_list, 1)
        self.import_btn.clicked.connect(self._ask_import)
        self.selfplay_btn.clicked.connect(lambda: self.import_selfplay(
            QFileDialog.getOpenFileName(self, "Self-play episodes", "", "memlab-episode/1 (*.json *.jsonl)")[0]))
        return w

    def _build_campaign_tab(self) -> QWidget:
        w = QWidget()
        box = QGroupBox("New campaign")
        form = QFormLayout(box)
        self.c_name = QLineEdit()
        self.c_name.setPlaceholderText("e.g. memory-round-1")
        self.c_preset = QComboBox()
        for key, label in PRESETS:
            self.c_preset.addItem(label, key)
        self.c_unit = QComboBox()
        self.c_unit.addItems(["session", "episode"])
        self.c_source = QComboBox()
        self.c_sample = QSpinBox()
        self.c_sample.setRange(0, 1_000_000)
        self.c_sample.setSpecialValueText("all")
        self.c_groups = QSpinBox()
        self.c_groups.setRange(1, 26)
        self.c_groups.setValue(3)
        self.c_overlap = QComboBox()
        self.c_overlap.addItems(["split", "full", "2", "3"])
        self.c_create = QPushButton("Create campaign")
        form.addRow("Name", self.c_name)
        form.addRow("Preset", self.c_preset)
        form.addRow("Unit (dataset preset)", self.c_unit)
        form.addRow("Episodes", self.c_source)
        form.addRow("Sample episodes", self.c_sample)
        form.addRow("Groups", self.c_groups)
        form.addRow("Raters per item in a group", self.c_overlap)
        form.addRow(self.c_create)
        self.campaign_table = _table()
        self.close_btn = QPushButton("Close rating")
        self.close_btn.setToolTip("End rating for the campaign chosen at the top; reviewers then see flagged items "
                                  "and disagreement across groups")
        self.reopen_btn = QPushButton("Reopen rating")
        self.close_btn.clicked.connect(lambda: self.close_rating(True))
        self.reopen_btn.clicked.connect(lambda: self.close_rating(False))
        crow = QHBoxLayout()
        crow.addWidget(QLabel("<b>Campaigns</b>"))
        crow.addStretch(1)
        crow.addWidget(self.close_btn)
        crow.addWidget(self.reopen_btn)
        lay = QVBoxLayout(w)
        lay.addWidget(box)
        lay.addLayout(crow)
        lay.addWidget(self.campaign_table, 1)
        self.c_create.clicked.connect(lambda: self.create_campaign())
        self.c_preset.currentIndexChanged.connect(lambda _: self.c_unit.setEnabled(self.c_preset.currentData() == "dataset"))
        self.c_unit.setEnabled(False)
        return w

    def _build_people_tab(self) -> QWidget:
        w = QWidget()
        box = QGroupBox("Annotator accounts — annotators choose theirs from a list on the Annotate page")
        row = QHBoxLayout(box)
        self.a_name = QLineEdit()
        self.a_name.setPlaceholderText("name")
        self.a_name.setToolTip("Names are compared ignoring case: \"Ann\" and \"ann\" are one account")
        self.a_pin = QLineEdit()
        self.a_pin.setPlaceholderText("PIN (optional)")
        self.a_pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.a_pin.setMaximumWidth(120)
        self.a_pin.setToolTip("Guards against picking the wrong name on a shared machine; stored hashed")
        self.a_role = QComboBox()
        self.a_role.addItem("annotator", "annotator")
        self.a_role.addItem("reviewer", "reviewer")
        self.a_role.setToolTip("A reviewer sees flagged items and disagreement across groups after rating closes")
        self.a_group = QComboBox()
        self.a_group.setToolTip("The group of the selected campaign this annotator rates in")
        self.a_add = QPushButton("Add")
        self.a_refresh = QPushButton("Refresh")
        row.addWidget(QLabel("Name"))
        row.addWidget(self.a_name, 1)
        row.addWidget(self.a_pin)
        row.addWidget(QLabel("Role"))
        row.addWidget(self.a_role)
        row.addWidget(QLabel("Group"))
        row.addWidget(self.a_group)
        row.addWidget(self.a_add)
        row.addWidget(self.a_refresh)
        self.a_role.currentIndexChanged.connect(lambda _i: self.a_group.setEnabled(self.a_role.currentData() == "annotator"))
        self.accounts_table = _table()
        self.accounts_table.setMaximumHeight(140)
        pkg_row = QHBoxLayout()  # annotators on other machines (annotation.packages)
        self.pkg_export_btn = QPushButton("Export annotator package…")
        self.pkg_export_btn.setToolTip("The selected annotator's queue as a small file to rate offline on another machine")
        self.pkg_merge_btn = QPushButton("Merge packages…")
        self.pkg_merge_btn.setToolTip("Append the ratings of returned annotator packages (merging twice adds nothing)")
        pkg_row.addWidget(self.pkg_export_btn)
        pkg_row.addWidget(self.pkg_merge_btn)
        pkg_row.addStretch(1)
        self.member_table = _table()
        self.group_progress_table = _table()
        self.group_progress_table.setMaximumHeight(150)
        lay = QVBoxLayout(w)
        lay.addWidget(box)
        lay.addWidget(QLabel("<b>Accounts</b>"))
        lay.addWidget(self.accounts_table)
        lay.addLayout(pkg_row)
        lay.addWidget(QLabel("<b>Progress per group</b>"))
        lay.addWidget(self.group_progress_table)
        lay.addWidget(QLabel("<b>Progress per annotator</b> (items finished / assigned)"))
        lay.addWidget(self.member_table, 1)
        self.a_add.clicked.connect(lambda: self.add_annotator())
        self.a_name.returnPressed.connect(lambda: self.add_annotator())
        self.a_refresh.clicked.connect(self.refresh_progress)
        self.pkg_export_btn.clicked.connect(self._ask_export_package)
        self.pkg_merge_btn.clicked.connect(self._ask_merge_packages)
        return w

    def _build_agreement_tab(self) -> QWidget:
        w = QWidget()
        self.compute_btn = QPushButton("Compute agreement")
        self.bootstrap = QSpinBox()
        self.bootstrap.setRange(0, 10000)
        self.bootstrap.setValue(1000)
        self.bootstrap.setSingleStep(100)
        row = QHBoxLayout()
        row.addWidget(self.compute_btn)
        row.addWidget(QLabel("bootstrap resamples"))
        row.addWidget(self.bootstrap)
        row.addStretch(1)
        row.addWidget(QLabel("Export report:"))
        self.export_btns = {}
        for fmt in REPORT_FORMATS:
            b = QPushButton(fmt.upper())
            b.clicked.connect(lambda _=False, f=fmt: self._ask_export(f))
            self.export_btns[fmt] = b
            row.addWidget(b)
        self.agreement_table = _table()
        self.agreement_table.setMaximumHeight(150)
        self.agreement_table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.group_table = _table()
        self.chart_holder = QVBoxLayout()
        self.chart = None  # AgreementChart, built on first use (matplotlib is lazy)
        lay = QVBoxLayout(w)
        lay.addLayout(row)
        lay.addWidget(QLabel("<b>Agreement across groups</b> (hover a cell or a heading for its meaning)"))
        lay.addWidget(self.agreement_table)
        self.agreement_note = QLabel()
        self.agreement_note.setWordWrap(True)
        self.agreement_note.setStyleSheet("color: #555")
        lay.addWidget(self.agreement_note)
        lay.addLayout(self.chart_holder, 2)
        lay.addWidget(QLabel("<b>Per group</b>"))
        lay.addWidget(self.group_table, 1)
        self.compute_btn.clicked.connect(lambda: self.compute_agreement())
        return w

    # -- study ---------------------------------------------------------------------------------
    def _open(self):
        from annotation.db import open_study

        if self._study is None and self.ctx.study_path:
            self._study = open_study(self.ctx.study_path)
        return self._study

    def _ask_new(self):
        path, _ = QFileDialog.getSaveFileName(self, "New study", "study.db", "MemLab study (*.db)")
        if path:
            self.create_study(path)

    def _ask_open(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open study", "", "MemLab study or annotator package (*.db *.sqlite *.memlab);;All files (*)")
        if path:
            self.open_study(path)

    def create_study(self, path: str) -> bool:
        from annotation.db import StudyError, init_study

        if os.path.exists(path):
            self._say(f"{path} already exists; use Open study.", error=True)
            return False
        try:
            init_study(path).close()
        except (StudyError, OSError) as e:
            self._say(f"Could not create {path}: {e}", error=True)
            return False
        self.ctx.set_study(os.path.abspath(path))
        self._say(f"Created study {path}.")
        return True

    def open_study(self, path: str) -> bool:
        from annotation.db import StudyError, open_study

        try:
            open_study(path).close()
        except (StudyError, OSError) as e:
            self._say(str(e), error=True)
            return False
        self.ctx.set_study(os.path.abspath(path))
        return True

    def _on_study(self, path: str) -> None:
        if self._study is not None:
            self._study.close()
            self._study = None
        self.study_label.setText(f"<b>Study</b>: {_esc(path)}" if path else "<b>No study open</b> — create or open one.")
        for w in (self.import_btn, self.selfplay_btn, self.c_create, self.a_add, self.compute_btn, self.close_btn,
                  self.reopen_btn,
                  *self.export_btns.values(), self.pkg_export_btn, self.pkg_merge_btn):
            w.setEnabled(bool(path))
        self.refresh()

    def refresh(self) -> None:
        """Re-read counts, sources, campaigns and progress from the study."""
        study = self._open() if self.ctx.study_path else None
        if study is None:
            self.counts_label.setText("")
            fill_table(self.sources_table, ["Source", "Episodes"], [])
            fill_table(self.campaign_table, ["Campaign"], [])
            self.campaign_combo.clear()
            return
        from annotation.campaigns import list_campaigns
        from annotation.content import content_counts, episode_sources

        counts = content_counts(study)
        self.counts_label.setText(
            f"{counts['episodes']} episodes · {counts['sessions']} sessions · {counts['turns']} turns · "
            f"{counts['memories']} memories · {counts['memory_links']} links · {counts['memory_tags']} tags")
        sources = episode_sources(study)
        fill_table(self.sources_table, ["Source", "Episodes"], [[s or "—", n] for s, n in sources])
        current = self.c_source.currentData()
        self.c_source.clear()
        self.c_source.addItem(f"all episodes ({counts['episodes']})", None)
        for s, n in sources:
            label = f"saved chats ({n})" if s == LIVE_CHAT else f"source {s or '—'} ({n})"
            self.c_source.addItem(label, s)
        if current is not None:
            i = self.c_source.findData(current)
            if i >= 0:
                self.c_source.setCurrentIndex(i)
        campaigns = list_campaigns(study)
        fill_table(self.campaign_table, ["Campaign", "Preset", "Items", "Groups", "Overlap", "Created", "Rating", "Criteria"],
                   [[c.name, c.preset, c.n_items, ", ".join(c.groups), c.overlap, format_date(c.created_at),
                     f"closed {format_date(c.closed_at)}" if c.closed_at else "open",
                     ", ".join(f"{x.label} ({'1–5' if x.scale == 'likert' else 'pass/fail'}, per {x.target})"
                               for x in c.criteria)] for c in campaigns])
        self._campaigns = {c.name: c for c in campaigns}
        keep = self.campaign_combo.currentText()
        self.campaign_combo.blockSignals(True)
        self.campaign_combo.clear()
        self.campaign_combo.addItems(list(self._campaigns))
        if keep in self._campaigns:
            self.campaign_combo.setCurrentText(keep)
        self.campaign_combo.blockSignals(False)
        self._on_campaign(self.campaign_combo.currentText())

    def _on_campaign(self, name: str) -> None:
        camp = getattr(self, "_campaigns", {}).get(name)
        self.a_group.clear()
        if camp:
            self.a_group.addItems(camp.groups)
        self.refresh_progress()

    def on_shown(self) -> None:
        self.refresh()

    # -- background work -----------------------------------------------------------------------
    def _run(self, label: str, fn, *args, on_done, **kwargs):
        self._tasks += 1
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self._say(label)
        self.busy_changed.emit(True)

        def progress(done, total):
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)

        def finish(result=None, error=None):
            self._tasks -= 1
            if not self._tasks:
                self.progress.setVisible(False)
                self.cancel_btn.setVisible(False)
            if error is not None:
                self._say(f"{label} failed: {error}", error=True)
            else:
                on_done(result)
            self.busy_changed.emit(bool(self._tasks))

        return background.start(fn, *args, on_progress=progress, on_done=lambda r: finish(r),
                                on_error=lambda e: finish(error=e), **kwargs)

    def busy(self) -> bool:
        return self._tasks > 0

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#c53030" if error else "#2d3748"
        self.status_label.setText(f"<span style='color:{colour}'>{_esc(text)}</span>")
        self.status_label.setToolTip(text)
        self.ctx.status(text)

    # -- import --------------------------------------------------------------------------------
    def _ask_import(self):
        files, _ = QFileDialog.getOpenFileNames(self, "Import episodes", "", "JSON / JSON Lines / text (*.json *.jsonl *.txt);;All files (*)")
        if files:
            self.import_files(files)

    def import_files(self, files: list[str], fmt: str | None = None):
        fmt = fmt or self.format_combo.currentText()
        self._cancel.clear()
        self.cancel_btn.setVisible(True)
        self.cancel_btn.setEnabled(True)
        return self._run(f"Importing {len(files)} file(s)…", import_files_job, self.ctx.study_path, list(files), fmt,
                         cancel=self._cancel.is_set, on_done=self._imported)

    def cancel_import(self) -> None:
        self._cancel.set()
        self.cancel_btn.setEnabled(False)
        self._say("Cancelling the import… nothing of the file being read will be written.")

    def import_selfplay(self, path: str, campaign: str | None = None):
        """A ``memlab selfplay`` file → imported, plus a ``model``-preset campaign over its episodes (named
        after the file unless ``campaign`` is given; :func:`desktop.study_bridge.import_selfplay`)."""
        if not path:
            return None
        from desktop.study_bridge import import_selfplay

        campaign = campaign or f"model-{Path(path).stem}"
        return self._run(f"Importing self-play {Path(path).name} as campaign {campaign}…", import_selfplay,
                         self.ctx.study_path, path, campaign,
                         on_done=lambda r: (self._imported([(path, r[0])]), self._created(r[1])))

    def _imported(self, results) -> None:
        self.cancel_btn.setVisible(False)
        self.last_errors = []
        ok = 0
        for f, r in results:
            if isinstance(r, str):
                self.last_errors.append(r)
                item = QListWidgetItem(f"✗ {r}")
                item.setForeground(Qt.red)
            else:
                ok += 1
                item = QListWidgetItem(f"✓ {Path(f).name} ({r.format}): {r.episodes} episodes, {r.sessions} sessions, "
                                       f"{r.turns} turns, {r.memories} memories, {r.links} links, {r.tags} tags")
            self.errors_list.insertItem(0, item)
        self._say(f"Imported {ok} of {len(results)} file(s)"
                  + (f"; {len(self.last_errors)} failed (nothing from them was written)." if self.last_errors else "."),
                  error=bool(self.last_errors))
        self.refresh()
        self.imported.emit(results)

    # -- campaigns -----------------------------------------------------------------------------
    def create_campaign(self, name: str | None = None, preset: str | None = None, *, source: str | None = "<form>",
                        groups: int | None = None, overlap: str | None = None, unit: str | None = None,
                        sample: int | None = None):
        from annotation.campaigns import create_campaign
        from annotation.content import episode_ids

        name = (name if name is not None else self.c_name.text()).strip()
        preset = preset or self.c_preset.currentData()
        if source == "<form>":
            source = self.c_source.currentData()
        if not name:
            self._say("Give the campaign a name.", error=True)
            return None
        episodes = episode_ids(self._open(), source) if source is not None else None
        if source is not None and not episodes:
            self._say(f"No episodes from {source!r} in this study.", error=True)
            return None
        sample = self.c_sample.value() if sample is None else sample
        return self._run(f"Creating campaign {name}…", create_campaign, self.ctx.study_path, name, preset,
                         groups=groups or self.c_groups.value(), overlap=overlap or self.c_overlap.currentText(),
                         unit=unit or self.c_unit.currentText(), episodes=episodes, sample=sample or None,
                         on_done=self._created)

    def _created(self, camp) -> None:
        self._say(f"Campaign {camp.name}: {camp.n_items} items, groups {', '.join(camp.groups)}.")
        self.refresh()
        self.campaign_combo.setCurrentText(camp.name)

    # -- annotators and progress -----------------------------------------------------------------
    def add_annotator(self, name: str | None = None, group: str | None = None, *, pin: str | None = None,
                      role: str | None = None) -> bool:
        """Create an account (or take the existing one, matched ignoring case) and, for an annotator,
        put it in ``group`` of the selected campaign."""
        from annotation.accounts import create_account, find_annotator
        from annotation.campaigns import add_annotator
        from annotation.db import StudyError

        name = " ".join((name if name is not None else self.a_name.text()).split())
        role = role or self.a_role.currentData()
        pin = pin if pin is not None else (self.a_pin.text() or None)
        group = group or self.a_group.currentText()
        campaign = self.campaign_combo.currentText()
        if not name:
            self._say("Type the annotator's name.", error=True)
            return False
        try:
            study = self._open()
            existing = find_annotator(study, name)
            if role == "reviewer":
                if existing is not None:
                    raise StudyError(f"an account {existing[1]!r} already exists")
                create_account(study, name, role="reviewer", pin=pin)
                said = f"{name} reviews this study's closed campaigns."
            else:
                if not (group and campaign):
                    raise StudyError("Choose a campaign and a group for the annotator.")
                add_annotator(study, name, group, campaign, pin=pin)
                shown = existing[1] if existing else name
                said = f"{shown} rates in group {group} of {campaign}." + (
                    f" (the existing account {shown!r}: names are compared ignoring case)" if existing and shown != name else "")
        except StudyError as e:
            self._say(str(e), error=True)
            return False
        self.a_name.clear()
        self.a_pin.clear()
        self._say(said)
        self.refresh_progress()
        return True

    def close_rating(self, close: bool = True) -> bool:
        """Close (or reopen) rating for the selected campaign; reviewers start after it is closed."""
        from annotation.db import StudyError
        from annotation.review import close_campaign, reopen_campaign

        campaign = self.campaign_combo.currentText()
        if not campaign:
            self._say("Choose a campaign first.", error=True)
            return False
        try:
            (close_campaign if close else reopen_campaign)(self._open(), campaign)
        except StudyError as e:
            self._say(str(e), error=True)
            return False
        self._say(f"Rating for {campaign} is {'closed: reviewers can start' if close else 'open again'}.")
        self.refresh()
        return True

    def refresh_progress(self) -> None:
        campaign = self.campaign_combo.currentText()
        if not campaign or self._open() is None:
            fill_table(self.member_table, ["Annotator", "Group", "Progress"], [])
            fill_table(self.group_progress_table, ["Group", "Annotators", "Progress"], [])
            if self._open() is not None:
                self._refresh_accounts()
            return
        from annotation.queue import campaign_progress

        members = campaign_progress(self._open(), campaign)
        pct = lambda d, t: f"{d} / {t} ({100 * d / t:.0f}%)" if t else "0 / 0"
        fill_table(self.member_table, ["Annotator", "Group", "Progress"],
                   [[m.annotator, m.group, pct(m.done, m.total)] for m in members])
        groups = self._campaigns[campaign].groups if campaign in getattr(self, "_campaigns", {}) else []
        rows = []
        for g in groups:
            ms = [m for m in members if m.group == g]
            rows.append([g, len(ms), pct(sum(m.done for m in ms), sum(m.total for m in ms))])
        fill_table(self.group_progress_table, ["Group", "Annotators", "Progress"], rows)
        self._refresh_accounts()

    def _refresh_accounts(self) -> None:
        from annotation.accounts import list_accounts

        study = self._open()
        if study is None:
            return
        campaign = self.campaign_combo.currentText()
        from annotation.campaigns import annotator_group

        fill_table(self.accounts_table, ["Account", "Role", "PIN", f"Group in {campaign or '—'}", "Created"],
                   [[a.name, a.role, "yes" if a.has_pin else "—",
                     (annotator_group(study, campaign, a.name) or "—") if campaign and a.role == "annotator" else "—",
                     format_date(a.created_at)] for a in list_accounts(study)])

    # -- annotator packages (logic in annotation.packages) ----------------------------------------
    def _ask_export_package(self) -> None:
        row = self.member_table.currentRow()
        name = self.member_table.item(row, 0).text() if row >= 0 and self.member_table.item(row, 0) else ""
        if not name:
            self._say("Select an annotator in the table first.", error=True)
            return
        path, _ = QFileDialog.getSaveFileName(self, f"Export {name}'s package", f"{name}.memlab",
                                              "Annotator package (*.memlab)")
        if path:
            self.export_package(name, path if path.endswith(".memlab") else path + ".memlab")

    def export_package(self, annotator: str, path: str):
        from annotation.packages import package_annotator

        return self._run(f"Exporting {annotator}'s package…", package_annotator, self.ctx.study_path,
                         self.campaign_combo.currentText() or None, annotator, path, overwrite=True,
                         on_done=lambda info: self._say(f"Wrote {path}: {len(info.item_hashes)} items for "
                                                        f"{info.annotator} (group {info.group})."))

    def _ask_merge_packages(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Merge annotator packages", "", "Annotator package (*.memlab)")
        if files:
            self.merge_packages(files)

    def merge_packages(self, files: list[str]):
        from annotation.packages import merge_packages

        def done(reports):
            self._say("Merged: " + "; ".join(str(r).split(" — ")[0] for r in reports))
            self.refresh_progress()
        return self._run(f"Merging {len(files)} package(s)…", merge_packages, self.ctx.study_path, files, on_done=done)

    # -- agreement and report --------------------------------------------------------------------
    def compute_agreement(self):
        campaign = self.campaign_combo.currentText()
        if not campaign:
            self._say("Choose a campaign first.", error=True)
            return None
        return self._run(f"Computing agreement for {campaign}…", agreement_job, self.ctx.study_path, campaign,
                         self.bootstrap.value(), on_done=self._show_agreement)

    def _show_agreement(self, data: dict) -> None:
        from annotation.report import agreement_table_compact, group_table
        from desktop.widgets.charts import AgreementChart

        self.report = data
        head, rows, tips, head_tips = agreement_table_compact(data)
        fill_table(self.agreement_table, head, rows, tips, head_tips, fit=True)
        self.agreement_table.setMaximumHeight(self.agreement_table.horizontalHeader().height() + 8
                                              + sum(self.agreement_table.rowHeight(r) for r in range(len(rows))))
        notes = sorted({t for r, row in enumerate(rows) for c, t in enumerate(tips[r]) if row[c].endswith("*")})
        self.agreement_note.setText("* n/a: " + "; ".join(notes) if notes else "")
        self.agreement_note.setToolTip("\n".join(notes))
        fill_table(self.group_table, *group_table(data))
        if self.chart is None:
            self.chart = AgreementChart()
            self.chart_holder.addWidget(self.chart)
        self.chart.plot(chart_figures(data))
        f = data["facts"]
        self._say(f"Agreement for {f['campaign']}: {f['n_ratings_latest']} ratings on {f['n_items']} items "
                  f"({f['bootstrap_resamples']} bootstrap resamples).")
        self.agreement_ready.emit(data)

    def _ask_export(self, fmt: str) -> None:
        campaign = self.campaign_combo.currentText()
        if not campaign:
            self._say("Choose a campaign first.", error=True)
            return
        path, _ = QFileDialog.getSaveFileName(self, f"Export {fmt.upper()} report", f"{campaign}-report.{fmt}",
                                              f"{fmt.upper()} (*.{fmt})")
        if path:
            if not path.lower().endswith("." + fmt):
                path += "." + fmt
            self.export_report(path)

    def export_report(self, path: str):
        from annotation.report import write_report

        campaign = self.campaign_combo.currentText()
        return self._run(f"Writing {Path(path).name}…", write_report, self.ctx.study_path, campaign, path,
                         bootstrap=self.bootstrap.value(), on_done=self._exported)

    def _exported(self, path) -> None:
        self._say(f"Report written: {path}")
        self.exported.emit(str(path))

    def can_close(self) -> bool:
        return not self.busy()
