"""Memory page: an agent's egocentric memory (EMMA paper §3.3) as a list and a link graph.

The list filters by the speaker a memory is about, by session and by text; Edit and Delete go to
the engine (``engine.memory.MemoryStore.edit/delete``: an edit is a new version, a delete a
tombstone, both in the memory's history). The graph (:mod:`desktop.widgets.memory_graph`) and the
inspector show text, session, source turns, links and versions of the selected memory.
"""

from __future__ import annotations

import datetime as dt
import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QInputDialog, QLabel,
                               QLineEdit, QMessageBox, QPushButton, QSplitter, QStackedWidget, QTableWidget,
                               QTableWidgetItem, QTextBrowser, QVBoxLayout, QWidget)

from desktop.memory_snapshot import MemorySnapshot

ALL = "(all)"


class MemoryPage(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.snapshot: MemorySnapshot | None = None
        self._agent = None  # AgentSession used for edits (created on demand)
        self._build()
        ctx.memory_changed.connect(self.set_snapshot)
        if ctx.memory_snapshot is not None:
            self.set_snapshot(ctx.memory_snapshot)
        else:
            self.set_snapshot(MemorySnapshot())

    def _build(self):
        root = QVBoxLayout(self)
        head = QHBoxLayout()
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.episode_pick = QComboBox()
        self.episode_pick.hide()
        self.episode_pick.currentIndexChanged.connect(self._pick_episode)
        self.open_button = QPushButton("Open episodes file…")
        self.open_button.setToolTip("Show the memory of an episode from a memlab-episode/1 file (read-only)")
        self.open_button.clicked.connect(self._ask_open)
        head.addWidget(self.title, 1)
        head.addWidget(self.episode_pick)
        head.addWidget(self.open_button)
        root.addLayout(head)
        self._episodes = []

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        lbox = QVBoxLayout(left)
        lbox.setContentsMargins(0, 0, 0, 0)
        filters = QHBoxLayout()
        self.about_filter = QComboBox()
        self.session_filter = QComboBox()
        self.text_filter = QLineEdit()
        self.text_filter.setPlaceholderText("search text")
        for w in (self.about_filter, self.session_filter):
            w.currentIndexChanged.connect(self._fill_table)
        self.text_filter.textChanged.connect(self._fill_table)
        filters.addWidget(QLabel("About"))
        filters.addWidget(self.about_filter)
        filters.addWidget(QLabel("Session"))
        filters.addWidget(self.session_filter)
        filters.addWidget(self.text_filter, 1)
        lbox.addLayout(filters)

        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Id", "About", "S", "Memory"])
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        h = self.table.horizontalHeader()
        for c in range(3):
            h.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._on_table_selection)
        lbox.addWidget(self.table, 1)

        buttons = QHBoxLayout()
        self.edit_button = QPushButton("Edit…")
        self.delete_button = QPushButton("Delete")
        self.edit_button.clicked.connect(self._ask_edit)
        self.delete_button.clicked.connect(self._ask_delete)
        self.count_label = QLabel()
        buttons.addWidget(self.count_label, 1)
        buttons.addWidget(self.edit_button)
        buttons.addWidget(self.delete_button)
        lbox.addLayout(buttons)

        self.inspector = QTextBrowser()
        self.inspector.setOpenLinks(False)
        self.inspector.anchorClicked.connect(lambda url: self.select(url.toString().partition(":")[2], center=True))
        lbox.addWidget(self.inspector, 1)
        split.addWidget(left)

        from desktop.widgets.memory_graph import MemoryGraph  # matplotlib loads with this page only

        self.graph = MemoryGraph()
        self.graph.node_selected.connect(lambda mid: self.select(mid, from_graph=True))
        split.addWidget(self.graph)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([440, 660])
        # parameterised memory (the "adapters" capability, e.g. MiLP): a table of partner adapters instead
        from desktop.widgets.adapter_table import AdapterTable

        self.adapter_view = AdapterTable()
        self.views = QStackedWidget()
        self.views.addWidget(split)
        self.views.addWidget(self.adapter_view)
        root.addWidget(self.views, 1)

    # -- data ------------------------------------------------------------------------------------
    def set_snapshot(self, snapshot: MemorySnapshot):
        self.snapshot = snapshot
        if snapshot.adapters is not None:
            self.views.setCurrentWidget(self.adapter_view)
            self.adapter_view.set_adapters(snapshot.adapters, snapshot.owner)
            self.title.setText(f"<b>Parameterised memory of {html.escape(snapshot.owner or '—')}</b> · "
                               f"{html.escape(snapshot.title or 'no agent yet')} · {len(snapshot.adapters)} partner adapters")
            self.edit_button.setEnabled(False)
            self.delete_button.setEnabled(False)
            return
        self.views.setCurrentIndex(0)
        src = html.escape(snapshot.title or "no agent yet")
        live = "live agent — edits go to the engine" if snapshot.agent and self.ctx.engine_available else "read-only"
        n = len(snapshot.live())
        self.title.setText(f"<b>Memory of {html.escape(snapshot.owner or '—')}</b> · {src} · {n} memories · "
                           f"{len(snapshot.links)} links · <i>{live}</i>")
        self._refill_filters()
        self._fill_table()
        self.graph.set_snapshot(snapshot)
        selected = self.graph.selected
        self._show_inspector(selected)

    def _refill_filters(self):
        snap = self.snapshot
        for combo, values in ((self.about_filter, snap.speakers()),
                              (self.session_filter, [str(s + 1) for s in snap.sessions()])):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(ALL)
            combo.addItems(values)
            i = combo.findText(current)
            combo.setCurrentIndex(max(i, 0))
            combo.blockSignals(False)

    def filtered(self):
        about = self.about_filter.currentText()
        session = self.session_filter.currentText()
        return self.snapshot.filtered(None if about in (ALL, "") else about,
                                      None if session in (ALL, "") else int(session) - 1,
                                      self.text_filter.text())

    def _fill_table(self):
        rows = self.filtered()
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for r, m in enumerate(rows):
            for c, value in enumerate((m.id, m.about, str(m.session + 1), m.text)):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, m.id)
                if c == 3:
                    item.setToolTip(m.text)
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)
        total = len(self.snapshot.live())
        self.count_label.setText(f"{len(rows)} of {total} shown")
        self._update_buttons()

    def _update_buttons(self):
        editable = bool(self.snapshot and self.snapshot.agent and self.ctx.engine_available)
        has = self.current_id() is not None
        self.edit_button.setEnabled(editable and has)
        self.delete_button.setEnabled(editable and has)
        tip = "" if editable else "Only a live agent's memory can be edited (open its chat first)"
        self.edit_button.setToolTip(tip)
        self.delete_button.setToolTip(tip)

    def current_id(self) -> str | None:
        items = self.table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else self.graph.selected

    def _ask_open(self):
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Open episodes", "", "Episodes (*.json *.jsonl)")
        if path:
            try:
                self.open_episodes(path)
            except ValueError as e:
                QMessageBox.warning(self, "Open episodes", str(e))

    def open_episodes(self, path):
        """Show the memories of the episodes in a ``memlab-episode/1`` file (pick one in the combo)."""
        from engine.data.episode_format import read_episodes

        self._episodes = read_episodes(path)
        self.episode_pick.blockSignals(True)
        self.episode_pick.clear()
        for ep in self._episodes:
            self.episode_pick.addItem(f"{ep.id} · {ep.main.name} · {len(ep.memories)} memories")
        self.episode_pick.blockSignals(False)
        self.episode_pick.setVisible(len(self._episodes) > 1)
        if self._episodes:
            self._pick_episode(0)

    def _pick_episode(self, i):
        if 0 <= i < len(self._episodes):
            self.graph.snapshot = None  # a different episode: fresh layout
            snap = MemorySnapshot.from_episode(self._episodes[i])
            self.ctx.memory_snapshot = snap
            self.set_snapshot(snap)

    # -- selection -----------------------------------------------------------------------------------
    def navigate_to(self, memory_id):
        if isinstance(memory_id, str) and memory_id:
            self.select(memory_id, center=True)

    def select(self, memory_id: str, from_graph: bool = False, center: bool = False):
        if self.snapshot is None or memory_id not in self.snapshot.by_id():
            return
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == memory_id:
                self.table.blockSignals(True)
                self.table.selectRow(r)
                self.table.blockSignals(False)
                self.table.scrollToItem(self.table.item(r, 0))
                break
        if not from_graph:
            self.graph.select(memory_id, center=center)
        self._show_inspector(memory_id)
        self._update_buttons()

    def _on_table_selection(self):
        items = self.table.selectedItems()
        if items:
            self.select(items[0].data(Qt.ItemDataRole.UserRole))

    def _show_inspector(self, memory_id):
        snap = self.snapshot
        if not memory_id or memory_id not in snap.by_id():
            self.inspector.setHtml("<p style='color:#666'>Select a memory in the list or click a node in the graph.</p>")
            return
        m = snap.by_id()[memory_id]
        mems = snap.by_id()
        out = [f"<p><b>{html.escape(m.id)}</b> · about <b>{html.escape(m.about)}</b> · session {m.session + 1}"
               f"{' · <span style=color:#b00020>deleted</span>' if m.deleted else ''}</p>",
               f"<p style='font-size:large'>{html.escape(m.text)}</p>"]
        if m.source_turns:
            out.append("<p><b>Source turns</b></p><ul>")
            for t in m.source_turns:
                out.append(f"<li>{html.escape(snap.turn_text.get(t, t))}</li>")
            out.append("</ul>")
        links = snap.links_of(m.id)
        if links:
            out.append("<p><b>Links</b> (newer → older)</p><ul>")
            for s, d, k in links:
                other = d if s == m.id else s
                arrow = "→" if s == m.id else "←"
                text = mems[other].text if other in mems else "(missing)"
                out.append(f"<li>{arrow} <a href='mem:{html.escape(other)}'>{html.escape(other)}</a> "
                           f"<i>[{html.escape(k)}]</i> {html.escape(text)}</li>")
            out.append("</ul>")
        if m.versions:
            out.append("<p><b>Versions</b></p><ol>")
            for v in m.versions:
                when = v.get("at", "")
                if isinstance(when, (int, float)):
                    when = dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M")
                out.append(f"<li>{html.escape(str(v.get('action', '')))} by {html.escape(str(v.get('by', '?')))} "
                           f"{html.escape(str(when))}: {html.escape(str(v.get('text', '')))}</li>")
            out.append("</ol>")
        self.inspector.setHtml("".join(out))

    # -- edits ---------------------------------------------------------------------------------------
    def _agent_session(self):
        from desktop.agent_session import AgentSession

        if self._agent is None or self._agent.agent_id != self.snapshot.agent:
            self._agent = AgentSession(self.ctx.engine, self.snapshot.agent, "", {}, parent=self)
            self._agent.memory_loaded.connect(self._on_edited)
            self._agent.failed.connect(lambda op, msg: QMessageBox.warning(self, "Memory", f"{op} failed: {msg}"))
        return self._agent

    def _ask_edit(self):
        mid = self.current_id()
        if mid is None:
            return
        old = self.snapshot.by_id()[mid].text
        text, ok = QInputDialog.getMultiLineText(self, "Edit memory", "New text (the old one stays in the history):", old)
        if ok and text.strip() and text.strip() != old:
            self.edit_memory(mid, text.strip())

    def _ask_delete(self):
        mid = self.current_id()
        if mid is not None and QMessageBox.question(
                self, "Delete memory", "Delete this memory? It stays in the history and can be restored.") \
                == QMessageBox.StandardButton.Yes:
            self.delete_memory(mid)

    def edit_memory(self, memory_id: str, text: str):
        self._agent_session().edit_memory(memory_id, text)

    def delete_memory(self, memory_id: str):
        self._agent_session().delete_memory(memory_id)

    def _on_edited(self, data: dict):
        snap = MemorySnapshot.from_worker(data, agent=self.snapshot.agent, title=self.snapshot.title,
                                          turn_text=self.snapshot.turn_text)
        # keep deleted memories visible in history: the worker's graph leaves tombstones out
        self.ctx.memory_snapshot = snap
        self.ctx.memory_changed.emit(snap)  # → set_snapshot here, and the chat page keeps it too
        self.ctx.status("memory updated")
