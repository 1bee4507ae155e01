"""Compare page: two to four agents answer the same user turns, with the same partner switches.

Blind mode shows the panels as A, B, C, D in a shuffled order; the systems are revealed after the
first vote. A vote (left better / right better / tie / both bad) between two panels is stored in the
open study (or the data folder's comparisons study, :mod:`desktop.compare_store`), append-only, with
both transcripts and what each system stored and retrieved; the leaderboard is refitted
(Bradley–Terry; bootstrap intervals once a system has enough votes; votes per pair,
:mod:`desktop.leaderboard`). The "Memory" tab shows, per system, what it stored at the end of each
session and what it was given from memory in the sessions after — the point of comparing memory
systems (hidden behind the letters until the first vote in blind mode).
"""

from __future__ import annotations

import html
import random
import string

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QPushButton, QSpinBox, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget,
                               QTextBrowser, QVBoxLayout, QWidget)

from desktop import compare_store
from desktop.agent_session import AgentSession
from desktop.leaderboard import MIN_GAMES_FOR_INTERVAL, leaderboard, pair_counts
from desktop import systems
from desktop.pages.chat import CSS, ENGINE_MISSING, PartnerDialog, speaker_label

VOTES = (("left", "Left better"), ("right", "Right better"), ("tie", "Tie"), ("both_bad", "Both bad"))


class Panel(QGroupBox):
    """One agent's transcript in the comparison."""

    def __init__(self, letter: str, system: str, session: AgentSession):
        super().__init__()
        self.letter, self.system, self.agent = letter, system, session
        self.turns: list[dict] = []  # {"session", "role", "text", "memories"}
        self.stored: dict[int, list[str]] = {}  # session index → memory texts stored at its end
        self.streaming: dict | None = None
        box = QVBoxLayout(self)
        self.view = QTextBrowser()
        self.view.document().setDefaultStyleSheet(CSS)
        box.addWidget(self.view)
        session.token.connect(self._token)

    def set_title(self, reveal: bool):
        label = systems.label(self.system)
        self.setTitle(f"{self.letter} — {label}" if reveal else f"{self.letter}")

    def _token(self, piece):
        if self.streaming is not None:
            self.streaming["text"] += piece
            self.view.moveCursor(self.view.textCursor().MoveOperation.End)
            self.view.insertPlainText(piece)

    def render(self, main: str, partners: dict[int, dict], reveal: bool = True):
        """``reveal`` False hides which memories each turn was given (they would give the system away)."""
        parts, last = [], None
        for t in self.turns:
            if t["session"] != last:
                last = t["session"]
                parts.append(f"<p class='session'>Session {last + 1} with {html.escape(speaker_label(partners[last]))}</p>")
            who = main if t["role"] == "bot" else partners[t["session"]]["name"]
            cls = t["role"]
            parts.append(f"<p class='{cls}'><b>{html.escape(who)}:</b> {html.escape(t['text'])}</p>")
            if t.get("error"):
                parts.append(f"<p class='err'>⚠ {html.escape(t['error'])}</p>")
            if t.get("memories") and reveal:
                mems = "; ".join(html.escape(m.get("text", "")[:80]) for m in t["memories"])
                parts.append(f"<p class='mem'>memories given: {mems}</p>")
        self.view.setHtml("".join(parts))
        self.view.verticalScrollBar().setValue(self.view.verticalScrollBar().maximum())


class ComparePage(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.panels: list[Panel] = []
        self.partners: dict[int, dict] = {}
        self.session_index = -1
        self.revealed = True
        self.blind = False
        self.main = {"name": "Alice", "job": ""}
        self._run = 0
        self._comparison = ""
        self._waiting: set[str] = set()
        self._next_partner: dict | None = None
        self._build()
        self.refresh_leaderboard()
        self._render_memory_log()
        ctx.study_changed.connect(lambda _p: self.refresh_leaderboard())
        self._update_controls()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self):
        root = QVBoxLayout(self)
        self.tabs = QTabWidget()
        root.addWidget(self.tabs)
        side = QWidget()
        self.tabs.addTab(side, "Side by side")
        box = QVBoxLayout(side)

        setup = QHBoxLayout()
        self.count = QSpinBox()
        self.count.setRange(2, 4)
        self.count.setValue(2)
        self.count.valueChanged.connect(self._show_pickers)
        setup.addWidget(QLabel("Agents"))
        setup.addWidget(self.count)
        self.pickers = []
        defaults = systems.compare_defaults(4)
        for i in range(4):
            c = QComboBox()
            systems.fill_combo(c)
            c.setCurrentIndex(c.findData(defaults[i % len(defaults)]) if defaults else -1)
            c.setMinimumContentsLength(12)
            c.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            self.pickers.append(c)
            setup.addWidget(c)
        self.main_name = QLineEdit(self.ctx.settings.value("chat/main_name", "Alice"))
        self.main_name.setMaximumWidth(110)
        self.main_job = QLineEdit(self.ctx.settings.value("chat/main_job", "teacher"))
        self.main_job.setMaximumWidth(120)
        self.blind_box = QCheckBox("Blind")
        self.blind_box.setChecked(True)
        self.blind_box.setToolTip("Hide which system is which (A/B…) until you vote")
        self.start_button = QPushButton("Start…")
        self.start_button.clicked.connect(self._ask_start)
        setup.addStretch(1)
        box.addLayout(setup)
        setup2 = QHBoxLayout()
        for w in (QLabel("Agent"), self.main_name, self.main_job, self.blind_box, self.start_button):
            setup2.addWidget(w)
        setup2.addStretch(1)
        box.addLayout(setup2)

        bar = QHBoxLayout()
        self.session_label = QLabel()
        self.session_label.setTextFormat(Qt.TextFormat.RichText)
        self.new_session_button = QPushButton("New session with…")
        self.new_session_button.clicked.connect(self._ask_new_session)
        bar.addWidget(self.session_label, 1)
        bar.addWidget(self.new_session_button)
        box.addLayout(bar)

        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.note)
        if not self.ctx.engine_available:
            self.note.setText(ENGINE_MISSING)
        else:
            self.note.hide()

        self.split = QSplitter(Qt.Orientation.Horizontal)
        box.addWidget(self.split, 1)

        row = QHBoxLayout()
        self.input = QLineEdit()
        self.input.setPlaceholderText("Write as the partner; every agent answers the same turn (Enter sends)")
        self.input.returnPressed.connect(self._send_clicked)
        self.send_button = QPushButton("Send to all")
        self.send_button.clicked.connect(self._send_clicked)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        row.addWidget(self.input, 1)
        row.addWidget(self.send_button)
        row.addWidget(self.stop_button)
        box.addLayout(row)

        vote = QHBoxLayout()
        vote.addWidget(QLabel("Vote:"))
        self.left_pick = QComboBox()
        self.right_pick = QComboBox()
        vote.addWidget(self.left_pick)
        vote.addWidget(QLabel("vs"))
        vote.addWidget(self.right_pick)
        self.vote_buttons = {}
        for key, label in VOTES:
            b = QPushButton(label)
            b.clicked.connect(lambda _=False, k=key: self.vote(k))
            self.vote_buttons[key] = b
            vote.addWidget(b)
        vote.addStretch(1)
        box.addLayout(vote)
        QShortcut(QKeySequence("Escape"), self, activated=self.stop)

        board = QWidget()
        bbox = QVBoxLayout(board)
        self.board_note = QLabel()
        self.board_note.setWordWrap(True)
        bbox.addWidget(self.board_note)
        self.board = QTableWidget(0, 7)
        self.board.setHorizontalHeaderLabels(["System", "Rating", "95% interval", "Games", "Wins", "Losses", "Ties"])
        self.board.horizontalHeaderItem(2).setToolTip(
            f"2.5–97.5 % over bootstrap resamples of the votes; shown once a system has {MIN_GAMES_FOR_INTERVAL} games")
        self.board.verticalHeader().hide()
        self.board.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.board.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        bbox.addWidget(self.board, 2)
        bbox.addWidget(QLabel("<b>Votes per pair</b>"))
        self.pairs = QTableWidget(0, 6)
        self.pairs.setHorizontalHeaderLabels(["Pair", "Votes", "First wins", "Second wins", "Ties", "Both bad"])
        self.pairs.verticalHeader().hide()
        self.pairs.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.pairs.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        bbox.addWidget(self.pairs, 1)
        self.tabs.addTab(board, "Leaderboard")
        from desktop.pages.offline_eval import OfflineEvalTab  # "Run offline evaluation…" (memlab eval compare)

        self.offline = OfflineEvalTab(self.ctx)
        self.tabs.addTab(self.offline, "Offline evaluation")
        self.memory_log = QTextBrowser()
        self.memory_log.document().setDefaultStyleSheet(CSS)
        self.tabs.addTab(self.memory_log, "Memory")
        self._show_pickers()

    def _show_pickers(self):
        for i, c in enumerate(self.pickers):
            c.setVisible(i < self.count.value())

    def _update_controls(self):
        engine = self.ctx.engine_available
        running = bool(self.panels)
        busy = bool(self._waiting)
        self.start_button.setEnabled(engine and not busy)
        self.new_session_button.setEnabled(running and not busy)
        self.send_button.setEnabled(running and not busy and self.session_index >= 0)
        self.input.setEnabled(running)
        self.stop_button.setEnabled(busy)
        has_turns = running and any(t["role"] == "bot" for t in self.panels[0].turns)
        for b in self.vote_buttons.values():
            b.setEnabled(has_turns and not busy)
        if not running:
            self.session_label.setText("<i>Pick 2–4 systems and press “Start…”.</i>")
        else:
            p = self.partners.get(self.session_index, {})
            mode = "blind — systems hidden until you vote" if not self.revealed else "systems shown"
            self.session_label.setText(f"<b>Session {self.session_index + 1}</b> · partner "
                                       f"<b>{html.escape(speaker_label(p))}</b> · {mode}")

    # -- running a comparison -------------------------------------------------------------------------
    def _ask_start(self):
        dlg = PartnerDialog([], self, "First session with…")
        if dlg.exec() == QDialog.DialogCode.Accepted and dlg.partner():
            systems = [c.currentData() for c in self.pickers[: self.count.value()]]
            self.start(systems, {"name": self.main_name.text().strip() or "Alice", "job": self.main_job.text().strip()},
                       dlg.partner(), blind=self.blind_box.isChecked())

    def start(self, systems: list[str], main: dict, partner: dict, blind: bool = True, seed: int | None = None):
        """Start a comparison of ``systems`` (2–4); blind mode shuffles them behind letters."""
        if not 2 <= len(systems) <= 4:
            raise ValueError("compare two to four agents")
        for p in self.panels:
            p.agent.drop()
            p.setParent(None)
            p.deleteLater()
        self.panels = []
        self._run += 1
        systems = list(systems)
        if blind:
            random.Random(seed).shuffle(systems)
        self.blind, self.revealed, self.main = blind, not blind, dict(main)
        self.partners, self.session_index = {}, -1
        for i, system in enumerate(systems):
            letter = string.ascii_uppercase[i]
            agent = AgentSession(self.ctx.engine, f"compare-{self._run}-{letter}", system, main, parent=self)
            agent.replied.connect(lambda r, a=agent: self._replied(a, r))
            agent.failed.connect(lambda op, m, a=agent: self._failed(a, op, m))
            agent.session_ended.connect(lambda r, a=agent: self._ended(a, r))
            panel = Panel(letter, system, agent)
            panel.set_title(self.revealed)
            self.panels.append(panel)
            self.split.addWidget(panel)
            agent.create()
        for combo in (self.left_pick, self.right_pick):
            combo.clear()
            combo.addItems([p.letter for p in self.panels])
        self.right_pick.setCurrentIndex(1)
        self.note.hide()
        self._comparison = compare_store.new_comparison_id()
        self._begin_session(partner)

    def _begin_session(self, partner: dict):
        self.session_index += 1
        self.partners[self.session_index] = dict(partner)
        for p in self.panels:
            p.agent.start_session(partner, self.session_index)
            p.render(self.main["name"], self.partners, self.revealed)
        self._update_controls()

    def _ask_new_session(self):
        known = list({p["name"]: p for p in self.partners.values()}.values())
        dlg = PartnerDialog(known, self)
        if dlg.exec() == QDialog.DialogCode.Accepted and dlg.partner():
            self.new_session(dlg.partner())

    def new_session(self, partner: dict):
        """End the session for every agent (each stores its memories), then all switch partner."""
        self._next_partner = dict(partner)
        self._waiting = {p.agent.agent_id for p in self.panels}
        for p in self.panels:
            p.agent.end_session()
        self.ctx.status("ending the session for every agent…")
        self._update_controls()

    def _ended(self, agent, result):
        update = (result or {}).get("update") or {}
        panel = self._panel(agent)
        panel.stored[self.session_index] = [m.get("text", "") for m in update.get("memories", []) if isinstance(m, dict)]
        self._render_memory_log()
        self._waiting.discard(agent.agent_id)
        if not self._waiting and self._next_partner is not None:
            partner, self._next_partner = self._next_partner, None
            self._begin_session(partner)

    def _send_clicked(self):
        text = self.input.text().strip()
        if text and self.send_button.isEnabled():
            self.input.clear()
            self.send(text)

    def send(self, text: str):
        self._waiting = {p.agent.agent_id for p in self.panels}
        for p in self.panels:
            p.turns.append({"session": self.session_index, "role": "user", "text": text})
            p.streaming = {"session": self.session_index, "role": "bot", "text": ""}
            p.render(self.main["name"], self.partners, self.revealed)
            p.view.append(f"<p class='bot'><b>{html.escape(self.main['name'])}:</b> </p>")
            p.agent.respond(text)
        self._update_controls()

    def stop(self):
        for p in self.panels:
            if p.streaming is not None:
                p.agent.cancel()

    def _panel(self, agent) -> Panel:
        return next(p for p in self.panels if p.agent is agent)

    def _replied(self, agent, result):
        p = self._panel(agent)
        turn = p.streaming or {"session": self.session_index, "role": "bot", "text": ""}
        p.streaming = None
        turn["text"] = result.get("reply", turn["text"])
        turn["memories"] = result.get("memories", [])
        turn["cancelled"] = bool(result.get("cancelled"))
        p.turns.append(turn)
        p.render(self.main["name"], self.partners, self.revealed)
        self._waiting.discard(agent.agent_id)
        self._render_memory_log()
        self._update_controls()

    def _failed(self, agent, op, message):
        p = self._panel(agent)
        if op == "respond" and p.streaming is not None:
            turn, p.streaming = p.streaming, None
            turn["error"] = message
            p.turns.append(turn)
            p.render(self.main["name"], self.partners, self.revealed)
        self._waiting.discard(agent.agent_id)
        if op == "end_session" and not self._waiting and self._next_partner is not None:
            partner, self._next_partner = self._next_partner, None
            self._begin_session(partner)
        self.note.setText(f"<span style='color:#b00020'>{html.escape(p.letter)}: {html.escape(op)} failed: "
                          f"{html.escape(message)}</span>")
        self.note.show()
        self._update_controls()

    # -- votes -------------------------------------------------------------------------------------------
    def vote(self, outcome: str) -> dict | None:
        li, ri = self.left_pick.currentIndex(), self.right_pick.currentIndex()
        if li == ri or li < 0 or ri < 0:
            self.ctx.status("pick two different panels to vote on")
            return None
        left, right = self.panels[li], self.panels[ri]
        try:
            record = compare_store.append_vote(
                self.ctx.data_dir, left.system, right.system, outcome, blind=not self.revealed,
                transcript={"left": left.turns, "right": right.turns, "main": self.main},
                partners=[self.partners[i] for i in sorted(self.partners)],
                memory={p.system: self.memory_summary(p) for p in (left, right)},
                comparison=self._comparison, study_path=self.ctx.study_path)
        except ValueError as e:
            self.ctx.status(f"vote not stored: {e}")
            return None
        if not self.revealed:
            self.revealed = True
            for p in self.panels:
                p.set_title(True)
                p.render(self.main["name"], self.partners, True)
            self._render_memory_log()
        self.ctx.status(f"vote stored: {left.letter} ({left.system}) vs {right.letter} ({right.system}): {outcome}")
        self.refresh_leaderboard()
        self._update_controls()
        return record

    # -- memory between sessions ------------------------------------------------------------------------
    @staticmethod
    def memory_summary(panel: Panel) -> dict:
        """What ``panel``'s system stored at each session's end and was given from memory in each session."""
        retrieved: dict[int, list[str]] = {}
        for t in panel.turns:
            if t.get("role") == "bot":
                seen = retrieved.setdefault(t["session"], [])
                for m in t.get("memories") or []:
                    text = m.get("text", "") if isinstance(m, dict) else str(m)
                    if text and text not in seen:
                        seen.append(text)
        return {"stored": {str(k): v for k, v in sorted(panel.stored.items())},
                "retrieved": {str(k): v for k, v in sorted(retrieved.items())}}

    def _render_memory_log(self) -> None:
        if not self.panels:
            self.memory_log.setHtml("<p><i>Start a comparison: after each session this shows what every system "
                                    "stored, and in the next sessions what it retrieved.</i></p>")
            return
        if not self.revealed:
            self.memory_log.setHtml("<p><i>Blind comparison: what each system stored and retrieved is shown after "
                                    "your first vote (it would give the systems away).</i></p>")
            return
        parts = []
        for p in self.panels:
            summary = self.memory_summary(p)
            label = systems.label(p.system)
            parts.append(f"<h3>{html.escape(p.letter)} — {html.escape(label)}</h3>")
            sessions = sorted({int(k) for k in summary["stored"]} | {int(k) for k in summary["retrieved"]})
            if not sessions:
                parts.append("<p class='mem'>nothing yet</p>")
            for i in sessions:
                partner = html.escape(speaker_label(self.partners.get(i, {})))
                got = summary["retrieved"].get(str(i))
                if i > 0 or got:
                    parts.append(f"<p><b>Session {i + 1}</b> with {partner} — retrieved: "
                                 + ("; ".join(html.escape(x[:100]) for x in got) if got else "<i>nothing</i>") + "</p>")
                if str(i) in summary["stored"]:
                    stored = summary["stored"][str(i)]
                    parts.append(f"<p><b>End of session {i + 1}</b> — stored {len(stored)}: "
                                 + ("; ".join(html.escape(x[:100]) for x in stored) if stored else "<i>nothing</i>")
                                 + "</p>")
        self.memory_log.setHtml("".join(parts))

    def refresh_leaderboard(self):
        try:
            votes = compare_store.read_votes(self.ctx.data_dir, self.ctx.study_path)
        except ValueError as e:
            self.board_note.setText(f"<span style='color:#b00020'>{html.escape(str(e))}</span>")
            return
        triples = [(v["left"], v["right"], v["outcome"]) for v in votes]
        rows = leaderboard(triples)
        self.board.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = [systems.label(row.system), f"{row.rating:.0f}", row.interval_text(),
                     str(row.games), str(row.wins), str(row.losses), str(row.ties)]
            for c, v in enumerate(cells):
                item = QTableWidgetItem(v)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c == 2 and not row.has_interval:
                    item.setToolTip(f"An interval needs at least {MIN_GAMES_FOR_INTERVAL} games for this system; "
                                    "with fewer, every bootstrap resample is the same few votes.")
                self.board.setItem(r, c, item)
        pairs = pair_counts(triples)
        self.pairs.setRowCount(len(pairs))
        for r, p in enumerate(pairs):
            cells = [f"{systems.label(p.a)} vs {systems.label(p.b)}", str(p.games), str(p.a_wins), str(p.b_wins),
                     str(p.ties), str(p.both_bad)]
            for c, v in enumerate(cells):
                item = QTableWidgetItem(v)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.pairs.setItem(r, c, item)
        blind = sum(1 for v in votes if v.get("blind"))
        where = self.ctx.study_path or compare_store.default_study_path(self.ctx.data_dir)
        voters = sorted({v.get("voter") for v in votes if v.get("voter")})
        self.board_note.setText(
            f"{len(votes)} votes ({blind} blind"
            + (f"; voters: {', '.join(voters)}" if voters else "") + f"), stored in {where}. "
            "Bradley–Terry ratings on the Elo scale (mean 1000); ties and “both bad” count half a win each; "
            f"the 95% interval is the 2.5–97.5 % range over 1,000 bootstrap resamples of the votes, shown once a "
            f"system has {MIN_GAMES_FOR_INTERVAL} games.")
