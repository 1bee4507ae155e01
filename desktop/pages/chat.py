"""Chat page: a mixed-session live chat with one agent (MiSC setting, EMMA paper §3).

The user plays each session's partner; "New session with…" ends the session (the agent
summarises and links its memories, with a progress bar, then the page shows what was stored) and
starts the next one with another partner. Replies stream from the engine worker; Stop cancels at
the next token; Regenerate and editing a user turn keep the replaced turns as a branch. Each bot
turn lists the memories it was given (click → Memory page). Chats are saved after every change.
"""

from __future__ import annotations

import html
import re
import textwrap

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QKeySequence, QShortcut, QTextCursor
from PySide6.QtWidgets import (QCheckBox, QComboBox, QMenu, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QInputDialog, QLabel, QLineEdit, QPlainTextEdit, QProgressBar,
                               QPushButton, QTextBrowser, QToolButton, QVBoxLayout, QWidget)

from desktop import chat_store, systems
from desktop.agent_session import AgentSession
from engine.chat.document import ChatDocument, ChatTurn
from desktop.memory_snapshot import MemorySnapshot

ENGINE_MISSING = ("<b>The engine is not installed</b> (PyTorch is missing), so live chat is off. "
                  "Annotation and studies work without it. To chat, install the engine: "
                  "<code>pip install 'memlab[engine]'</code>. Saved chats can still be opened and exported.")

CSS = """
p { margin: 2px 0; }
.session { color: #1f4e79; font-weight: bold; margin-top: 10px; }
.user { background: #eef4fb; }
.bot { background: #f6f6f6; }
.mem { color: #555555; font-size: small; margin-left: 18px; }
.note { color: #8a5a00; font-size: small; }
.err { color: #b00020; }
.rej { color: #8a1c1c; font-size: small; margin-left: 18px; }
"""

_PROVENANCE = re.compile(r"\(about [^()]*, from [^()]* session\)\s*$")


def memory_label(m: dict) -> str:
    """A memory's text with its provenance shown once: EMMA's stored text already ends with
    ``(about X, from ... session)``; other memories get ``(about X)``."""
    text = str(m.get("text", "")).strip()
    if _PROVENANCE.search(text) or not m.get("about"):
        return text
    return f"{text} (about {m['about']})"


def speaker_label(d: dict) -> str:
    return f"{d.get('name', '')} ({d['job']})" if d.get("job") else d.get("name", "")


class PartnerDialog(QDialog):
    """Ask who the next session is with (a returning partner or a new one)."""

    def __init__(self, known: list[dict], parent=None, title="New session with…"):
        super().__init__(parent)
        self.setWindowTitle(title)
        form = QFormLayout(self)
        self.known = QComboBox()
        self.known.addItem("a new partner")
        for p in known:
            self.known.addItem(speaker_label(p), p)
        self.name = QLineEdit()
        self.job = QLineEdit()
        self.name.setPlaceholderText("e.g. Bob")
        self.job.setPlaceholderText("job or relationship, e.g. Alice's neighbour")
        self.known.currentIndexChanged.connect(self._pick)
        form.addRow("Partner", self.known)
        form.addRow("Name", self.name)
        form.addRow("Job / relationship", self.job)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _pick(self, i):
        p = self.known.itemData(i)
        if p:
            self.name.setText(p["name"])
            self.job.setText(p.get("job", ""))

    def partner(self) -> dict | None:
        name = self.name.text().strip()
        return {"name": name, "job": self.job.text().strip()} if name else None


class ChatPage(QWidget):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.doc: ChatDocument | None = None
        self.agent: AgentSession | None = None
        self.streaming: ChatTurn | None = None
        self.agent_options: dict[str, dict] = {}  # system → options for its record (registry), e.g. from a test
        self._pending_partner: dict | None = None
        self._build()
        self._update_controls()
        ctx.study_changed.connect(lambda _p: self._update_controls())
        ctx.memory_changed.connect(self._on_memory_changed)

    # -- layout --------------------------------------------------------------------------------
    def _build(self):
        root = QVBoxLayout(self)
        top = QHBoxLayout()
        self.system = QComboBox()
        systems.fill_combo(self.system)
        self.main_name = QLineEdit(self.ctx.settings.value("chat/main_name", "Alice"))
        self.main_job = QLineEdit(self.ctx.settings.value("chat/main_job", "teacher"))
        self.main_name.setPlaceholderText("agent's name")
        self.main_job.setPlaceholderText("job")
        self.main_name.setMaximumWidth(120)
        self.main_job.setMaximumWidth(140)
        self.system.setMinimumContentsLength(14)
        self.system.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.new_chat_button = QPushButton("New chat…")
        self.new_chat_button.clicked.connect(self._ask_new_chat)
        self.file_button = QToolButton()
        self.file_button.setText("Chat file")
        self.file_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.file_button)
        self.open_button = menu.addAction("Open a saved chat…", self._ask_open)
        self.export_json_button = menu.addAction("Export JSON (memlab-episode/1)…", lambda: self._ask_export("json"))
        self.export_md_button = menu.addAction("Export Markdown…", lambda: self._ask_export("md"))
        self.file_button.setMenu(menu)
        for w in (QLabel("System"), self.system, QLabel("Agent"), self.main_name, self.main_job,
                  self.new_chat_button):
            top.addWidget(w)
        top.addStretch(1)
        top.addWidget(self.file_button)
        root.addLayout(top)

        bar = QHBoxLayout()
        self.session_label = QLabel()
        self.session_label.setTextFormat(Qt.TextFormat.RichText)
        # Session end (summarise, check, link) gets its own full-width row: the stage in words and a bar
        # that advances step by step (the engine reports "label, done, total").
        self.end_box = QWidget()
        end_row = QHBoxLayout(self.end_box)
        end_row.setContentsMargins(0, 0, 0, 0)
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setMinimumWidth(320)
        self.end_stop_button = QPushButton("Stop early")
        self.end_stop_button.setToolTip("Finish this session end now and keep what is done (e.g. MiLP's adapter "
                                        "training stops at the next step); systems with a short session end "
                                        "finish it anyway")
        self.end_stop_button.clicked.connect(self.stop_session_end)
        end_row.addWidget(self.progress_label, 2)
        end_row.addWidget(self.progress, 3)
        end_row.addWidget(self.end_stop_button)
        self.end_box.hide()
        self.new_session_button = QPushButton("New session with…")
        self.new_session_button.clicked.connect(self._ask_new_session)
        self.memory_button = QPushButton("Memory")
        self.memory_button.setToolTip("Open this agent's memory and link graph")
        self.memory_button.clicked.connect(self.open_memory)
        self.include_stopped = QCheckBox("Include stopped replies in studies")
        self.include_stopped.setToolTip("Replies cut off by Stop or by closing the window are saved and marked "
                                        "(stopped); they are left out when the chat is imported into a study "
                                        "unless this is ticked")
        bar.addWidget(self.session_label, 1)
        bar.addWidget(self.include_stopped)
        bar.addWidget(self.memory_button)
        bar.addWidget(self.new_session_button)
        root.addLayout(bar)
        root.addWidget(self.end_box)

        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        self.note.hide()
        root.addWidget(self.note)
        if not self.ctx.engine_available:
            self.show_note(ENGINE_MISSING, error=False)

        self.transcript = QTextBrowser()
        self.transcript.setOpenLinks(False)
        self.transcript.anchorClicked.connect(self._anchor)
        self.transcript.document().setDefaultStyleSheet(CSS)
        root.addWidget(self.transcript, 1)

        row = QHBoxLayout()
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Write as the partner… (Ctrl+Enter sends)")
        self.input.setFixedHeight(64)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self._send_clicked)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.regen_button = QPushButton("Regenerate")
        self.regen_button.clicked.connect(self.regenerate)
        row.addWidget(self.input, 1)
        col = QVBoxLayout()
        for b in (self.send_button, self.stop_button, self.regen_button):
            col.addWidget(b)
        row.addLayout(col)
        root.addLayout(row)
        QShortcut(QKeySequence("Ctrl+Return"), self.input, activated=self._send_clicked)
        QShortcut(QKeySequence("Escape"), self, activated=self.stop)

    def show_note(self, text: str, error: bool = True):
        color = "#b00020" if error else "#5a4a00"
        self.note.setText(f"<span style='color:{color}'>{text}</span>")
        self.note.show()

    # -- state -----------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.agent is not None and self.agent.busy

    def _update_controls(self):
        engine = self.ctx.engine_available
        live = engine and self.agent is not None
        session = self.doc.current if self.doc else None
        in_session = live and session is not None and not session.ended
        busy = self.busy()
        for w in (self.system, self.main_name, self.main_job, self.new_chat_button):
            w.setEnabled(engine and not busy)
        self.open_button.setEnabled(not busy)
        self.export_json_button.setEnabled(self.doc is not None)
        self.export_md_button.setEnabled(self.doc is not None)
        self.new_session_button.setEnabled(live and not busy)
        self.send_button.setEnabled(in_session and not busy)
        self.input.setEnabled(in_session)
        self.stop_button.setEnabled(self.streaming is not None)
        last = session.turns[-1] if session and session.turns else None
        self.regen_button.setEnabled(in_session and not busy and last is not None and last.role == "bot")
        self.memory_button.setEnabled(self.doc is not None)
        if self.doc is None or session is None:
            self.session_label.setText("<i>No chat yet — pick a system and the agent's name, then “New chat…”.</i>")
        else:
            main = speaker_label(self.doc.main)
            state = "ended" if session.ended else "in progress"
            study = " · saved to the open study when finished" if self.ctx.study_path else ""
            self.session_label.setText(
                f"<b>Session {session.index + 1}</b> ({state}) · partner <b>{html.escape(speaker_label(session.partner))}</b>"
                f" · agent {html.escape(main)} · {html.escape(getattr(self, 'system_label', '') or self.doc.system)}{study}")

    # -- chat lifecycle ----------------------------------------------------------------------------
    def _ask_new_chat(self):
        dlg = PartnerDialog([], self, "First session with…")
        if dlg.exec() == QDialog.DialogCode.Accepted and dlg.partner():
            self.new_chat(self.system.currentData(), {"name": self.main_name.text().strip() or "Alice",
                                                       "job": self.main_job.text().strip()}, dlg.partner())

    def new_chat(self, system: str, main: dict, partner: dict) -> ChatDocument:
        """Start a chat with a fresh agent of ``system`` and its first session with ``partner``."""
        self.finish_chat()
        self.ctx.settings.setValue("chat/main_name", main["name"])
        self.ctx.settings.setValue("chat/main_job", main.get("job", ""))
        idx = self.system.findData(system)
        if idx >= 0:
            self.system.setCurrentIndex(idx)
        self.doc = ChatDocument(system, main)
        self._attach_agent()
        self.agent.create()
        self.note.hide()
        self._begin_session(partner)
        return self.doc

    def _attach_agent(self, state=None):
        if self.agent is not None:
            self.agent.drop()
            self.agent.deleteLater()
        self.agent = AgentSession(self.ctx.engine, self.doc.id, self.doc.system, self.doc.main,
                                  options=self.agent_options.get(self.doc.system), parent=self)
        self.agent.token.connect(self._on_token)
        self.agent.replied.connect(self._on_replied)
        self.agent.failed.connect(self._on_failed)
        self.agent.progress.connect(self._on_progress)
        self.agent.session_ended.connect(self._on_session_ended)
        self.agent.session_started.connect(lambda _i: self._update_controls())
        self.agent.ready.connect(self._on_ready)

    def _on_ready(self, result):
        d = result.get("describe") or {}
        self.system_label = d.get("label") or ""
        if d:
            what = self.system_label or self.doc.system
            extra = "; ".join(str(d[k]) for k in ("retriever_note",) if d.get(k))
            self.ctx.status(f"{what}: {d.get('lm', '')} on {d.get('lm_device', '?')}" + (f" · {extra}" if extra else ""))
        self._update_controls()

    def _begin_session(self, partner: dict):
        session = self.doc.new_session(partner)
        self.agent.start_session(session.partner, session.index)
        self._save()
        self.render()
        self._update_controls()
        self.input.setFocus()

    def _ask_new_session(self):
        known, seen = [], set()
        for s in self.doc.sessions if self.doc else []:
            if s.partner["name"] not in seen:
                seen.add(s.partner["name"])
                known.append(s.partner)
        dlg = PartnerDialog(known, self)
        if dlg.exec() == QDialog.DialogCode.Accepted and dlg.partner():
            self.new_session(dlg.partner())

    def new_session(self, partner: dict) -> None:
        """End the current session (summarise + link, with progress), then start one with ``partner``."""
        if self.doc is None or self.agent is None:
            return
        session = self.doc.current
        if session is None or session.ended:
            self._begin_session(partner)
            return
        self._pending_partner = partner
        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self.progress_label.setText(f"Ending session {session.index + 1}: starting…")
        self.end_box.show()
        self.agent.end_session()
        self._update_controls()

    def stop_session_end(self) -> None:
        if self.agent is not None:
            self.agent.stop_session_end()
            self.progress_label.setText(self.progress_label.text() + " — stopping…")

    def _on_progress(self, label, done, total):
        self.end_box.show()
        if total > 0:
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(done))
            self.progress.setFormat(f"step {min(int(done) + 1, int(total))} of {int(total)} · %p%")
        session = self.doc.current if self.doc is not None else None
        where = f"Ending session {session.index + 1}: " if session is not None else ""
        self.progress_label.setText(where + (label or "working…"))

    def _on_session_ended(self, result):
        self.end_box.hide()
        session = self.doc.current
        session.ended = True
        session.stored = dict(result.get("update") or {})
        self.doc.memory = dict(result.get("memory") or {})
        self.doc.agent_state = result.get("state")
        n = len(session.stored.get("memories", []))
        self.ctx.status(f"Session {session.index + 1} ended: {n} memories stored")
        self.ctx.memory_snapshot = self.memory_snapshot()
        self.ctx.memory_changed.emit(self.ctx.memory_snapshot)
        partner, self._pending_partner = self._pending_partner, None
        if partner:
            self._begin_session(partner)
        else:
            self._save()
            self.render()
            self._update_controls()

    # -- turns ---------------------------------------------------------------------------------------
    def _send_clicked(self):
        text = self.input.toPlainText().strip()
        if text and self.send_button.isEnabled():
            self.input.clear()
            self.send(text)

    def send(self, text: str) -> None:
        """Say ``text`` as the partner and stream the agent's reply."""
        session = self.doc.current
        session.turns.append(ChatTurn("user", text))
        self.streaming = ChatTurn("bot", "")
        session.turns.append(self.streaming)
        self.render()
        self.agent.respond(text)
        self._update_controls()

    def stop(self):
        if self.streaming is not None and self.agent is not None:
            self.agent.cancel()
            self.ctx.status("stopping…")

    def regenerate(self) -> None:
        session = self.doc.current
        users = [i for i, t in enumerate(session.turns) if t.role == "user"]
        if not users or session.turns[-1].role != "bot":
            return
        self._redo_from(users[-1], session.turns[users[-1]].text)

    def edit_turn(self, turn_index: int, new_text: str) -> None:
        """Replace user turn ``turn_index`` of the current session and continue from there;
        the turns it replaces are kept as a branch."""
        session = self.doc.current
        if session.turns[turn_index].role != "user":
            raise ValueError("only the partner's (user's) turns can be edited")
        self._redo_from(turn_index, new_text)

    def _redo_from(self, turn_index: int, text: str):
        session = self.doc.current
        k = sum(1 for t in session.turns[:turn_index] if t.role == "user")
        session.branch_from(turn_index)
        self.agent.rewind(k)
        self.send(text)

    def _on_token(self, piece: str):
        if self.streaming is None:
            return
        self.streaming.text += piece
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(piece)
        bar = self.transcript.verticalScrollBar()
        if bar.value() >= bar.maximum() - 40:
            bar.setValue(bar.maximum())

    def _on_replied(self, result):
        turn, self.streaming = self.streaming, None
        if turn is not None:
            turn.text = result.get("reply", turn.text) or turn.text
            turn.memories = list(result.get("memories") or [])
            turn.cancelled = bool(result.get("cancelled"))
            turn.seconds = float(result.get("seconds", 0.0))
        self._save()
        self.render()
        self._update_controls()

    def _on_failed(self, op, message):
        self.end_box.hide()
        if op == "respond" and self.streaming is not None:
            self.streaming.error = message
            self.streaming = None
            self.render()
        elif op == "end_session":
            self._pending_partner = None
        self.show_note(html.escape(f"{op} failed: {message}"))
        self.ctx.status(f"{op} failed")
        self._save()
        self._update_controls()

    # -- rendering -----------------------------------------------------------------------------------
    def render(self):
        doc = self.doc
        if doc is None:
            self.transcript.clear()
            return
        main = doc.main["name"]
        parts = []
        for s in doc.sessions:
            parts.append(f"<p class='session'>Session {s.index + 1} — {html.escape(main)} with "
                         f"{html.escape(speaker_label(s.partner))}</p>")
            for b in s.branches:
                parts.append(f"<p class='note'>↳ an earlier version of this session from turn {b['at'] + 1} on "
                             f"({len(b['turns'])} turns) is kept as a branch in the saved chat</p>")
            live = s is doc.current and not s.ended
            for i, t in enumerate(s.turns):
                if t is self.streaming:
                    continue
                parts.append(self._turn_html(s, i, t, main, live))
            if s.ended:
                mems = s.stored.get("memories", [])
                parts.append(f"<p class='note'>Session ended — {main} stored {len(mems)} "
                             f"memor{'y' if len(mems) == 1 else 'ies'}"
                             f" and {len(s.stored.get('links', []))} links:</p>")
                for m in mems:
                    parts.append(f"<p class='mem'>• <a href='mem:{html.escape(m['id'])}'>"
                                 f"{html.escape(memory_label(m))}</a></p>")
                rejected = s.stored.get("rejected", [])
                if rejected:
                    parts.append(f"<p class='note'>Not stored ({len(rejected)} candidate"
                                 f"{'s' if len(rejected) != 1 else ''} failed the memory checks):</p>")
                for r in rejected:
                    parts.append(f"<p class='rej'>✗ {html.escape(r.get('text', ''))} <i>(about "
                                 f"{html.escape(r.get('about', ''))})</i> — {html.escape(r.get('reason', ''))}</p>")
                for n in s.stored.get("notes", []):
                    parts.append(f"<p class='mem'>{html.escape(str(n))}</p>")
        if self.streaming is not None:
            parts.append(f"<p class='bot'><b>{html.escape(main)}:</b> {html.escape(self.streaming.text)}")
        self.transcript.setHtml("".join(parts))
        self.transcript.verticalScrollBar().setValue(self.transcript.verticalScrollBar().maximum())

    def _turn_html(self, s, i, t, main, live):
        who = main if t.role == "bot" else s.partner["name"]
        cls = "bot" if t.role == "bot" else "user"
        extra = ""
        if t.role == "user" and live and not self.busy():
            extra = f" <a href='edit:{i}' style='font-size:small'>edit</a>"
        if t.cancelled:
            extra += " <span class='note'>(stopped)</span>"
        out = [f"<p class='{cls}'><b>{html.escape(who)}:</b> {html.escape(t.text)}{extra}</p>"]
        if t.error:
            out.append(f"<p class='err'>⚠ {html.escape(t.error)}</p>")
        out[0] = f"<a name='s{s.index}t{i}'></a>" + out[0]  # target of a "history given" link
        if t.role == "bot":
            past = [m for m in t.memories if m.get("kind") == "turn"]  # MDR: the history entries it was given
            mems = [m for m in t.memories if m.get("kind") != "turn"]
            if past:
                links = ", ".join(f"<a href='turn:{html.escape(str(m['id']))}'>{html.escape(textwrap.shorten(m.get('text', ''), 100))}</a>"
                                  + (f" <i>({html.escape(m['why'])})</i>" if m.get("why") else "") for m in past)
                out.append(f"<p class='mem'>history given: {links}</p>")
            if mems:
                links = ", ".join(f"<a href='mem:{html.escape(m['id'])}'>"
                                  f"{html.escape(textwrap.shorten(memory_label(m), 110))}</a>" for m in mems)
                out.append(f"<p class='mem'>memories given: {links}</p>")
            elif systems.shows_memory(self.doc.system) and not past:
                out.append("<p class='mem'>memories given: none</p>")
        return "".join(out)

    def _anchor(self, url: QUrl):
        kind, _, value = url.toString().partition(":")
        if kind == "mem":
            self.open_memory(value)
        elif kind == "turn":
            self.transcript.scrollToAnchor(value)
        elif kind == "edit":
            i = int(value)
            old = self.doc.current.turns[i].text
            text, ok = QInputDialog.getMultiLineText(self, "Edit turn", "New text (later turns are kept as a branch):", old)
            if ok and text.strip() and text.strip() != old:
                self.edit_turn(i, text.strip())

    # -- memory ----------------------------------------------------------------------------------------
    def memory_snapshot(self) -> MemorySnapshot:
        doc = self.doc
        data = doc.memory or {"owner": doc.main["name"], "memories": [], "links": []}
        if not data.get("owner"):
            data = dict(data, owner=doc.main["name"])
        turns = {}
        for s in doc.sessions:
            for k, t in enumerate(s.turns):
                turns[f"s{s.index}t{k}"] = f"{doc.main['name'] if t.role == 'bot' else s.partner['name']}: {t.text}"
        return MemorySnapshot.from_worker(data, agent=self.doc.id if self.agent else "", title=doc.title(),
                                          turn_text=turns)

    def _on_memory_changed(self, snapshot):
        """Keep the chat's copy of the memory in step with edits made on the Memory page."""
        if self.doc is not None and snapshot is not None and snapshot.agent == self.doc.id:
            self.doc.memory = snapshot.to_dict()
            self._save()

    def open_memory(self, memory_id: str | None = None):
        if self.doc is not None:
            self.ctx.show_memory(self.memory_snapshot(), memory_id or None)

    # -- saving, opening, export ---------------------------------------------------------------------
    def _save(self):
        if self.doc is not None:
            try:
                chat_store.save_chat(self.doc, self.ctx.data_dir)
            except OSError as e:
                self.show_note(html.escape(f"could not save the chat to {self.ctx.data_dir}: {e}"))

    def finish_chat(self):
        """Save the chat and, with a study open, import it there as a live-chat episode."""
        doc = self.doc
        if doc is None or not any(s.turns for s in doc.sessions):
            return None
        self._save()
        if self.ctx.study_path:
            try:
                eid = chat_store.import_into_study(self.ctx.study_path, doc,
                                                   include_cancelled=self.include_stopped.isChecked())
                self.ctx.status(f"chat saved to the study as episode {eid}")
                return eid
            except Exception as e:  # noqa: BLE001 — shown, the JSON copy is safe
                self.show_note(html.escape(f"could not save the chat to the study: {e}"))
        return None

    def can_close(self) -> bool:
        if self.streaming is not None:  # a reply cut off by closing: kept, marked as stopped
            if self.agent is not None:
                self.agent.cancel()
            self.streaming.cancelled = True
            self.streaming = None
        self.finish_chat()
        return True

    def _ask_open(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open a saved chat", str(chat_store.chats_dir(self.ctx.data_dir)),
                                              "MemLab chats (*.json)")
        if path:
            self.open_chat(path)

    def open_chat(self, path) -> ChatDocument:
        try:
            doc = chat_store.load_chat(path)
        except (OSError, ValueError) as e:
            self.show_note(html.escape(str(e)))
            raise
        self.finish_chat()
        self.doc = doc
        self.streaming = None
        if self.ctx.engine_available:
            self._attach_agent()
            self.agent.create(state=doc.agent_state)
            s = doc.current
            if s is not None and not s.ended:
                self.agent.start_session(s.partner, s.index)
                turns = [{"speaker": doc.main["name"] if t.role == "bot" else s.partner["name"], "text": t.text,
                          "memory_ids": [m["id"] for m in t.memories]} for t in s.turns if not t.error]
                self.ctx.engine.request("restore_turns", agent=doc.id, turns=turns)
        else:
            self.agent = None
        self.render()
        self._update_controls()
        return doc

    def _ask_export(self, kind: str):
        if self.doc is None:
            return
        suffix = "json" if kind == "json" else "md"
        path, _ = QFileDialog.getSaveFileName(self, "Export chat", f"{self.doc.id}.{suffix}")
        if path:
            self.export(path, kind)

    def export(self, path, kind: str):
        if kind == "json":
            from engine.data.episode_format import write_episodes

            write_episodes(path, [self.doc.to_episode()])
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.doc.to_markdown())
        self.ctx.status(f"exported {path}")
