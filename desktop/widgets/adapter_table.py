"""Parameterised memory on the Memory page (the agent contract's ``adapters`` capability; MiLP §2): one row
per partner adapter — θ = (α, n, r), size, the turns it was trained on, sessions, training loss — and the
selected adapter's details (which layers carry LoRA).  Shown instead of the memory list and graph."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QTextBrowser,
                               QVBoxLayout, QWidget)

COLUMNS = ("Partner", "θ (α, n, r)", "Parameters", "Size", "Trained turns", "Sessions", "Loss", "Last training")


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


class AdapterTable(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.note)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        h = self.table.horizontalHeader()
        for c in range(len(COLUMNS)):
            h.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._show_selected)
        box.addWidget(self.table, 1)
        self.details = QTextBrowser()
        box.addWidget(self.details, 1)
        self.adapters: list[dict] = []

    def set_adapters(self, adapters: list[dict], owner: str = "") -> None:
        self.adapters = list(adapters)
        self.note.setText(
            f"<b>{html.escape(owner or 'The agent')}</b> remembers each partner only through weights: one LoRA "
            "adapter per partner on the feed-forward layers (MiLP Eq. 1), trained at the end of a first session "
            "and updated when the partner returns. " + (f"{len(adapters)} partner adapter(s)." if adapters else
                                                        "No adapter yet — one is trained when a session ends."))
        self.table.setRowCount(len(adapters))
        for r, a in enumerate(adapters):
            loss = a.get("loss")
            cells = (a.get("partner", "") + ("  ● now" if a.get("active") else ""), a.get("theta_text", ""),
                     f"{int(a.get('parameters', 0)):,}", _size(int(a.get("size_bytes", 0))),
                     str(a.get("trained_turns", "")), str(a.get("sessions", "")),
                     "—" if loss is None else f"{loss:.3f}",
                     f"{a.get('steps', '')} steps, {a.get('seconds', '')} s ({a.get('status', '')})")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c in (2, 3, 4, 5, 6):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        if adapters:
            self.table.selectRow(0)
        else:
            self.details.clear()

    def _show_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.adapters):
            return
        a = self.adapters[rows[0].row()]
        theta = a.get("theta") or {}
        alpha = theta.get("alpha", [])
        strip = "".join("█" if v else "·" for v in alpha)
        self.details.setHtml(
            f"<h3>{html.escape(a.get('partner', ''))}</h3>"
            f"<p>adapter <code>{html.escape(a.get('name', ''))}</code> · {html.escape(a.get('theta_text', ''))}</p>"
            f"<p>layers with LoRA (α, layer 0 → {max(0, len(alpha) - 1)}):<br><code style='font-size:large'>"
            f"{strip}</code></p>"
            f"<p>n = {theta.get('n')} modules of rank r = {theta.get('r')} per FFN projection (one rank-n·r module), "
            f"{int(a.get('parameters', 0)):,} parameters, {_size(int(a.get('size_bytes', 0)))} stored (fp16) in the "
            f"chat.</p><p>trained on {a.get('trained_turns')} turns over {a.get('sessions')} session(s); last "
            f"training loss {('—' if a.get('loss') is None else format(a['loss'], '.3f'))}.</p>")
