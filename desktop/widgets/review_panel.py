"""The reviewer's view (MiSC §5.1 quality control), shown by the Annotate page to a reviewer account
once the owner has closed rating: every item that was flagged or on which the groups disagree, each
group's value, the annotators' comments and flags, and the item itself. The reviewer marks the
ratings of an item ``ok`` or ``flag`` (with a note); verdicts are appended to the study
(:func:`annotation.review.review`)."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from desktop.widgets.item_views import ItemView, item_ref


class ReviewPanel(QWidget):
    HEADERS = ("Item", "Criterion", "Group values", "Why", "Reviewed")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.items: list = []
        self._study = self._campaign = self._reviewer = None
        self._episode = None
        top = QHBoxLayout()
        self.who = QLabel()
        self.summary = QLabel()
        self.sign_out = QPushButton("Sign out")
        top.addWidget(self.who, 1)
        top.addWidget(self.summary)
        top.addWidget(self.sign_out)
        self.table = QTableWidget(0, len(self.HEADERS))
        self.table.setHorizontalHeaderLabels(self.HEADERS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        hh.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selected)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.item_view = ItemView()
        self.note = QLineEdit()
        self.note.setPlaceholderText("note for the study owner (optional)")
        self.ok_btn = QPushButton("Ratings OK")
        self.flag_btn = QPushButton("Flag ratings")
        self.ok_btn.clicked.connect(lambda: self.give("ok"))
        self.flag_btn.clicked.connect(lambda: self.give("flag"))
        self.message = QLabel()
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.detail)
        rl.addWidget(self.item_view, 1)
        row = QHBoxLayout()
        row.addWidget(self.note, 1)
        row.addWidget(self.ok_btn)
        row.addWidget(self.flag_btn)
        rl.addLayout(row)
        rl.addWidget(self.message)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(right)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(split, 1)

    def load(self, study, campaign: str, reviewer: str, items: list, episode_loader) -> None:
        self._study, self._campaign, self._reviewer, self._episode = study, campaign, reviewer, episode_loader
        self.who.setText(f"<b>{html.escape(campaign)}</b> · review by {html.escape(reviewer)}")
        self._fill(items)

    def _fill(self, items: list) -> None:
        self.items = items
        n_dis = sum(1 for i in items if i.disagree)
        n_flag = sum(1 for i in items if i.flags)
        self.summary.setText(f"{len(items)} to review: {n_dis} with groups disagreeing, {n_flag} flagged")
        self.table.setRowCount(len(items))
        for r, it in enumerate(items):
            values = ", ".join(f"{g}: {v}" for g, v in it.group_values.items()) or "—"
            reviewed = ", ".join(sorted({v["verdict"] for v in it.reviews})) or "—"
            for c, text in enumerate((it.key, it.label, values, it.reasons, reviewed)):
                cell = QTableWidgetItem(text)
                cell.setToolTip(text)
                self.table.setItem(r, c, cell)
        self.table.resizeColumnsToContents()
        if items:
            self.table.selectRow(0)
        else:
            self.detail.setText("Nothing to review: no item was flagged and the groups agree on every item.")
            self.item_view.clear("Nothing to review.")

    def current(self):
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.items[rows[0].row()] if rows else None

    def _selected(self) -> None:
        from annotation.queue import item_content

        it = self.current()
        if it is None:
            return
        ratings = "".join(f"<li>group {html.escape(r['group'])} · {html.escape(r['annotator'])}: <b>{html.escape(r['value'])}</b>"
                          + (f" — “{html.escape(r['comment'])}”" if r["comment"] else "") + "</li>" for r in it.ratings)
        flags = "".join(f"<li>⚑ {html.escape(f['annotator'])}: {html.escape(f['note'] or '(no note)')}</li>" for f in it.flags)
        self.detail.setText(f"<b>{html.escape(it.key)}</b> · {html.escape(it.label)} · {html.escape(it.reasons)}"
                            f"<ul style='margin:2px'>{ratings}{flags}</ul>")
        content = item_content(self._study, it.item_id)
        ref = item_ref(it.target, content)
        self.item_view.show_item(self._episode(ref.episode_id), ref)
        self.message.setText("")

    def give(self, verdict: str) -> list[int]:
        from annotation.db import StudyError
        from annotation.review import review, review_items

        it = self.current()
        if it is None or not it.ratings:
            self.message.setText("Select an item with ratings.")
            return []
        try:
            ids = review(self._study, self._campaign, self._reviewer, it, verdict, self.note.text())
        except StudyError as e:
            self.message.setText(f"<span style='color:#c53030'>{html.escape(str(e))}</span>")
            return []
        row = self.table.currentRow()
        self.note.clear()
        self._fill(review_items(self._study, self._campaign, self._reviewer))
        if 0 <= row < self.table.rowCount():
            self.table.selectRow(min(row + 1, self.table.rowCount() - 1))
        self.message.setText(f"<span style='color:#2f855a'>Saved: {verdict} on {len(ids)} rating(s).</span>")
        return ids
