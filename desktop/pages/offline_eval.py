"""The Compare page's "Offline evaluation" tab: ``memlab eval compare`` run in the engine worker.

Pick a data file (memlab-episode/1, ConvAI2, LoCoMo or MaLP), the systems and how many held-out turns; the
worker answers them with every system (:mod:`engine.evaluation.compare`), reporting progress, and can be
cancelled between answers (what finished is kept: a re-run with the same output folder continues). The result
is the table with 95% bootstrap intervals and the chart; with a study open it is also stored in the study
(:mod:`desktop.study_bridge`), next to the human ratings.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QListWidgetItem, QProgressBar, QPushButton, QScrollArea, QSpinBox,
                               QTextBrowser, QVBoxLayout, QWidget)

from desktop import background, systems

FORMATS = ("auto", "memlab", "convai2", "locomo", "malp")
EVAL_AGENT = "__eval__"  # the worker's cancel key for the evaluation request


def table_html(report: dict) -> str:
    """The report as an HTML table (values ×100 with the 95% interval)."""
    from engine.evaluation.compare_report import LABELS, metric_keys

    keys = metric_keys(report)
    head = "".join(f"<th>{LABELS[k]}</th>" for k in keys)
    rows = []
    meta = (report.get("meta") or {}).get("systems", report.get("meta") or {})
    for name, d in report["systems"].items():
        cells = []
        for k in keys:
            if k in d:
                lo, hi = d.get(f"{k}_ci", (None, None))
                ci = f"<br><small>[{100 * lo:.1f}, {100 * hi:.1f}]</small>" if lo is not None else ""
                cells.append(f"<td align='right'>{100 * d[k]:.1f}{ci}</td>")
            else:
                cells.append("<td>–</td>")
        rows.append(f"<tr><td><b>{html.escape(systems.label(name))}</b></td>{''.join(cells)}</tr>")
    notes = []
    for name, m in meta.items():
        if isinstance(m, dict):
            if m.get("failed"):
                notes.append(f"{html.escape(name)}: not scored — {html.escape(m['failed'])}")
            notes += [f"{html.escape(name)}: {html.escape(n)}" for n in m.get("notes", [])]
    return (f"<p>n = {report['n']} held-out turns (×100, 95% bootstrap interval)</p>"
            f"<table border='1' cellspacing='0' cellpadding='4'><tr><th>System</th>{head}</tr>{''.join(rows)}</table>"
            + "".join(f"<p style='color:#975a16'>{n}</p>" for n in notes))


class OfflineEvalTab(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.request: int | None = None
        self.last: dict | None = None
        box = QVBoxLayout(self)
        row = QHBoxLayout()
        self.data = QLineEdit(self.ctx.settings.value("eval/data", ""))
        self.data.setPlaceholderText("held-out data: episodes (.json/.jsonl), ConvAI2, LoCoMo or MaLP")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.format = QComboBox()
        self.format.addItems(FORMATS)
        row.addWidget(QLabel("Data"))
        row.addWidget(self.data, 1)
        row.addWidget(browse)
        row.addWidget(QLabel("Format"))
        row.addWidget(self.format)
        box.addLayout(row)
        row2 = QHBoxLayout()
        self.systems = QListWidget()
        self.systems.setMaximumHeight(110)
        checked = set(systems.compare_defaults(5))  # EMMA and the four baselines (registry order)
        for rec in systems.records():
            item = QListWidgetItem(rec.label)
            item.setData(Qt.ItemDataRole.UserRole, rec.name)
            item.setToolTip(rec.help)
            item.setCheckState(Qt.CheckState.Checked if rec.name in checked else Qt.CheckState.Unchecked)
            self.systems.addItem(item)
        self.limit = QSpinBox()
        self.limit.setRange(1, 100000)
        self.limit.setValue(20)
        self.samples = QSpinBox()
        self.samples.setRange(0, 20)
        self.samples.setValue(5)
        self.samples.setToolTip("sampled responses per query for S-Dist (MDR §5: five)")
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0, 86400)
        self.budget.setValue(0)
        self.budget.setSpecialValueText("none")
        self.budget.setToolTip("seconds a per-user-training system may train per user")
        self.store = QCheckBox("Store in the open study")
        self.store.setChecked(True)
        opts = QVBoxLayout()
        for label, w in (("Held-out turns", self.limit), ("Samples (S-Dist)", self.samples),
                         ("Budget per user (s)", self.budget)):
            line = QHBoxLayout()
            line.addWidget(QLabel(label))
            line.addWidget(w)
            opts.addLayout(line)
        opts.addWidget(self.store)
        row2.addWidget(self.systems, 1)
        row2.addLayout(opts)
        box.addLayout(row2)
        row3 = QHBoxLayout()
        self.run_button = QPushButton("Run offline evaluation…")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.status = QLabel()
        self.status.setWordWrap(True)
        row3.addWidget(self.run_button)
        row3.addWidget(self.cancel_button)
        row3.addWidget(self.progress, 1)
        box.addLayout(row3)
        box.addWidget(self.status)
        self.result = QTextBrowser()
        box.addWidget(self.result, 1)
        self.chart = QLabel()
        scroll = QScrollArea()
        scroll.setWidget(self.chart)
        scroll.setWidgetResizable(True)
        box.addWidget(scroll, 1)

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Held-out data", "", "JSON / JSON Lines (*.json *.jsonl);;All files (*)")
        if path:
            self.data.setText(path)

    def chosen_systems(self) -> list[str]:
        return [self.systems.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.systems.count())
                if self.systems.item(i).checkState() == Qt.CheckState.Checked]

    def out_dir(self, data: str) -> str:
        return str(Path(self.ctx.data_dir) / "evaluations" / f"compare-{Path(data).stem}")

    def run(self) -> int | None:
        data, chosen = self.data.text().strip(), self.chosen_systems()
        if not data or not os.path.isfile(data):
            self._say(f"Choose a data file first ({data or 'none given'} is not a file).", error=True)
            return None
        if not chosen:
            self._say("Tick at least one system.", error=True)
            return None
        self.ctx.settings.setValue("eval/data", data)
        fields = dict(data=data, format=self.format.currentText(), systems=chosen, limit=self.limit.value(),
                      samples=self.samples.value(), budget_s=float(self.budget.value()), out=self.out_dir(data))
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self._say(f"Evaluating {', '.join(chosen)} on {Path(data).name}…")
        self.request = self.ctx.engine.request("eval_compare", agent=EVAL_AGENT, on_done=self._done,
                                               on_error=self._failed, on_progress=self._progress, **fields)
        return self.request

    def cancel(self):
        if self.request is not None:
            self.ctx.engine.cancel(EVAL_AGENT, self.request)
            self._say("Cancelling after the current answer…")

    def _progress(self, label, done, total):
        if total:
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(done))
        self.status.setText(html.escape(str(label)))

    def _finish(self):
        self.request = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)

    def _failed(self, message):
        self._finish()
        self._say(f"Offline evaluation failed: {message}", error=True)

    def _done(self, result):
        self._finish()
        self.last = result
        report = result["report"]
        self.result.setHtml(table_html(report))
        if result.get("png") and os.path.isfile(result["png"]):
            self.chart.setPixmap(QPixmap(result["png"]))
        what = "cancelled: the table covers the answers that finished" if result.get("cancelled") else "done"
        self._say(f"Offline evaluation {what} ({report['n']} turns, {result.get('seconds', 0):.0f} s); "
                  f"files in {result.get('out')}.")
        if self.store.isChecked() and self.ctx.study_path and report["systems"]:
            from desktop.study_bridge import store_eval_report

            background.start(store_eval_report, self.ctx.study_path, report,
                             on_done=lambda where: self._say(f"Stored in the study as {where}."),
                             on_error=lambda e: self._say(f"Could not store it in the study: {e}", error=True))

    def _say(self, text: str, error: bool = False):
        colour = "#c53030" if error else "#2d3748"
        self.status.setText(f"<span style='color:{colour}'>{html.escape(text)}</span>")
        self.ctx.status(text)
