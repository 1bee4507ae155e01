"""Annotate: an annotator's blind, keyboard-first rating queue (MiSC human evaluation, EMMA paper §5).

Sign in with your account (created by the study owner, chosen from a list, optional PIN) and a
group of a campaign (§5.1: groups rate independently); a reviewer account gets the review view
(:mod:`desktop.widgets.review_panel`) once the campaign is closed. The queue is the
annotator's own seeded order (:mod:`annotation.queue`); it opens at the first unfinished item, so
closing the app and coming back resumes where you stopped. Keys: ``1``–``5`` rate a Likert
criterion, ``P``/``F`` pass/fail, ``↑``/``↓`` (or Tab) pick the criterion, ``N``/``B`` next/back,
``C`` comment. The criterion's definition and its anchors are always on screen. Every rating goes
through :func:`annotation.ratings.rate`, which returns only after its transaction is committed.

Blind by construction: this page reads the queue, the item's content and the annotator's *own*
latest values — no function it calls returns another annotator's or group's ratings.
"""

from __future__ import annotations

import html
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

KEY_HELP = ("<b>Keys</b>: 1–5 rate · P pass · F fail · ↑/↓ criterion · N next · B back · C comment · X flag"
            " — every rating is saved at once")

LIKERT_KEYS = {getattr(Qt, f"Key_{i}"): i for i in range(1, 6)}


def _esc(text) -> str:
    return html.escape(str(text or ""), quote=False)


class CriterionCard(QFrame):
    """One criterion: name, definition, 1–5 (or pass/fail) anchors, buttons and your current value."""

    value_clicked = Signal(str, int)  # criterion name, value

    def __init__(self, criterion, parent=None):
        super().__init__(parent)
        self.criterion = criterion
        self.setObjectName("criterionCard")
        self.setFrameShape(QFrame.StyledPanel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 8, 10, 8)
        lay.setSpacing(4)
        scale = "Likert 1–5" if criterion.scale == "likert" else "pass / fail"
        self.title = QLabel(f"<b style='font-size:12pt'>{_esc(criterion.label)}</b> <span style='color:#666'>({scale})</span>")
        self.definition = QLabel(_esc(criterion.definition))
        self.definition.setWordWrap(True)
        if criterion.scale == "likert":
            order = [str(i) for i in range(5, 0, -1)]
        else:
            order = ["pass", "fail"]
        rows = "".join(f"<tr><td valign='top' style='padding-right:6px'><b>{_esc(k)}</b></td>"
                       f"<td>{_esc(criterion.anchors.get(k, ''))}</td></tr>" for k in order if k in criterion.anchors)
        self.anchors = QLabel(f"<table style='color:#333; font-size:9pt'>{rows}</table>")
        self.anchors.setWordWrap(True)
        self.anchors.setTextFormat(Qt.RichText)
        buttons = QHBoxLayout()
        self.buttons: dict[int, QPushButton] = {}
        choices = ([(i, str(i)) for i in range(1, 6)] if criterion.scale == "likert"
                   else [(1, "P  pass"), (0, "F  fail")])
        for value, text in choices:
            b = QPushButton(text)
            b.setCheckable(True)
            b.setFocusPolicy(Qt.NoFocus)  # keys stay with the rating panel
            b.setMinimumWidth(44)
            b.clicked.connect(lambda _=False, v=value: self.value_clicked.emit(self.criterion.name, v))
            self.buttons[value] = b
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.value_label = QLabel()
        buttons.addWidget(self.value_label)
        lay.addWidget(self.title)
        lay.addWidget(self.definition)
        lay.addWidget(self.anchors)
        lay.addLayout(buttons)
        self.value: int | None = None
        self.set_value(criterion.my_value)
        self.set_active(False)

    def set_value(self, value: int | None) -> None:
        self.value = value
        for v, b in self.buttons.items():
            b.setChecked(v == value)
        if value is None:
            self.value_label.setText("<span style='color:#999'>not rated</span>")
        else:
            shown = str(value) if self.criterion.scale == "likert" else ("pass" if value else "fail")
            self.value_label.setText(f"your rating: <b>{shown}</b> ✓")

    def set_active(self, active: bool) -> None:
        colour = "#d69e2e" if active else "#cbd5e0"
        width = 2 if active else 1
        self.setStyleSheet(f"#criterionCard {{ border: {width}px solid {colour}; border-radius: 6px; }}")


class SignInPanel(QWidget):
    """Campaign, your account (from the study's list — never typed, so "ann" and "Ann" cannot fork a
    queue), its PIN when it has one, and your group. Nothing about other annotators' work is shown."""

    sign_in = Signal(str, str, str, str)  # campaign, account name, group, pin

    def __init__(self, parent=None):
        super().__init__(parent)
        box = QVBoxLayout(self)
        box.addStretch(1)
        inner = QWidget()
        inner.setMaximumWidth(540)
        form = QFormLayout(inner)
        title = QLabel("<h2>Annotate</h2><p>Choose your campaign and your account. Your queue is your own: you will "
                       "not see anyone else's ratings, and every rating is saved the moment you give it.</p>")
        title.setWordWrap(True)
        form.addRow(title)
        self.campaign = QComboBox()
        self.name = QComboBox()
        self.name.setToolTip("Accounts are created by the study owner on the Studies page")
        self.pin = QLineEdit()
        self.pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin.setPlaceholderText("this account has no PIN")
        self.group = QComboBox()
        self.group_note = QLabel()
        self.group_note.setStyleSheet("color: #555")
        self.group_note.setWordWrap(True)
        self.start = QPushButton("Start rating")
        self.start.setDefault(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c53030")
        form.addRow("Campaign", self.campaign)
        form.addRow("Account", self.name)
        form.addRow("PIN", self.pin)
        form.addRow("Group", self.group)
        form.addRow("", self.group_note)
        form.addRow(self.start)
        form.addRow(self.error)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(inner)
        row.addStretch(1)
        box.addLayout(row)
        box.addStretch(2)
        self.start.clicked.connect(self._go)
        self.pin.returnPressed.connect(self._go)
        self._groups: dict[str, list[str]] = {}
        self._accounts: dict[str, object] = {}
        self._membership = None  # callable(campaign, name) -> group | None
        self.campaign.currentTextChanged.connect(lambda _t: self._fill_groups())
        self.name.currentIndexChanged.connect(lambda _i: self._account_changed())

    def set_campaigns(self, campaigns: list, accounts: list | None = None, message: str = "", membership=None) -> None:
        current, who = self.campaign.currentText(), self.name.currentData()
        self._groups = {c.name: list(c.groups) for c in campaigns}
        self._membership = membership
        self.campaign.blockSignals(True)
        self.campaign.clear()
        for c in campaigns:
            closed = " (closed)" if getattr(c, "closed_at", None) else ""
            self.campaign.addItem(c.name + closed, c.name)
        self.campaign.blockSignals(False)
        if current:
            self.campaign.setCurrentIndex(max(self.campaign.findData(current.replace(" (closed)", "")), 0))
        self.name.blockSignals(True)
        self.name.clear()
        self._accounts = {a.name: a for a in accounts or []}
        for a in accounts or []:
            self.name.addItem(a.name + (" — reviewer" if a.role == "reviewer" else ""), a.name)
        self.name.blockSignals(False)
        if who in self._accounts:
            self.name.setCurrentIndex(self.name.findData(who))
        self._account_changed()
        self.start.setEnabled(bool(campaigns) and bool(accounts))
        if not message and campaigns and not accounts:
            message = "This study has no annotator accounts yet; the study owner adds them on the Studies page."
        self.error.setText(message)

    def campaign_name(self) -> str:
        return self.campaign.currentData() or ""

    def select(self, campaign: str | None = None, name: str | None = None, group: str | None = None) -> None:
        if campaign:
            i = self.campaign.findData(campaign)
            if i >= 0:
                self.campaign.setCurrentIndex(i)
        if name:
            i = self.name.findData(name)
            if i >= 0:
                self.name.setCurrentIndex(i)
        if group and self.group.isEnabled():
            self.group.setCurrentText(group)

    def _account_changed(self) -> None:
        acc = self._accounts.get(self.name.currentData())
        has_pin = bool(acc and acc.has_pin)
        self.pin.setEnabled(has_pin)
        self.pin.clear()
        self.pin.setPlaceholderText("your PIN" if has_pin else "this account has no PIN")
        self._fill_groups()

    def _fill_groups(self) -> None:
        campaign, name = self.campaign_name(), self.name.currentData()
        acc = self._accounts.get(name)
        current = self.group.currentText()
        self.group.clear()
        self.group.addItems(self._groups.get(campaign, []))
        fixed = self._membership(campaign, name) if (self._membership and campaign and name) else None
        if acc is not None and acc.role == "reviewer":
            self.group.setEnabled(False)
            self.group_note.setText("Reviewers see every group's ratings once the owner closes the campaign.")
        elif fixed:
            self.group.setCurrentText(fixed)
            self.group.setEnabled(False)
            self.group_note.setText(f"You rate in group {fixed} of this campaign (groups are independent).")
        else:
            self.group.setEnabled(True)
            if current:
                self.group.setCurrentText(current)
            self.group_note.setText("Pick the group the study owner put you in; you cannot switch later.")

    def _go(self) -> None:
        name = self.name.currentData()
        if not self.campaign_name():
            self.error.setText("This study has no campaign yet; the study owner creates one on the Studies page.")
            return
        if not name:
            self.error.setText("Choose your account (the study owner adds accounts on the Studies page).")
            return
        self.sign_in.emit(self.campaign_name(), name, self.group.currentText(), self.pin.text())


class RatingPanel(QWidget):
    """The item, the criteria and the queue bar. Takes the keyboard (see :data:`KEY_HELP`)."""

    key_action = Signal(str, object)  # ("rate", value) | ("next"|"back"|"comment"|"up"|"down", None)

    def __init__(self, parent=None):
        super().__init__(parent)
        from desktop.widgets.item_views import ItemView

        self.setFocusPolicy(Qt.StrongFocus)
        top = QHBoxLayout()
        self.who = QLabel()
        self.progress_label = QLabel()
        self.progress_label.setStyleSheet("font-size: 13pt; font-weight: bold")
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setMaximumWidth(220)
        self.position_label = QLabel()
        self.sign_out = QPushButton("Sign out")
        self.sign_out.setFocusPolicy(Qt.NoFocus)
        top.addWidget(self.who, 1)
        top.addWidget(self.position_label)
        top.addSpacing(12)
        top.addWidget(self.progress_label)
        top.addWidget(self.progress)
        top.addWidget(self.sign_out)

        self.item_view = ItemView()
        self.done_label = QLabel()
        self.done_label.setAlignment(Qt.AlignCenter)
        self.done_label.setWordWrap(True)
        self.left = QStackedWidget()
        self.left.addWidget(self.item_view)
        self.left.addWidget(self.done_label)

        self.cards_box = QWidget()
        self.cards_layout = QVBoxLayout(self.cards_box)
        self.cards_layout.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFocusPolicy(Qt.NoFocus)
        scroll.setWidget(self.cards_box)
        scroll.setMinimumWidth(320)

        nav = QHBoxLayout()
        self.back_btn = QPushButton("◀ Back (B)")
        self.next_btn = QPushButton("Next (N) ▶")
        self.comment_btn = QPushButton("Comment (C)")
        self.flag_btn = QPushButton("Flag item (X)")
        self.flag_btn.setToolTip("Tell the reviewer this item is broken, unclear or cannot be rated")
        for b in (self.back_btn, self.next_btn, self.comment_btn, self.flag_btn):
            b.setFocusPolicy(Qt.NoFocus)
        nav.addWidget(self.back_btn)
        nav.addWidget(self.comment_btn)
        nav.addWidget(self.flag_btn)
        nav.addWidget(self.next_btn)
        self.saved_label = QLabel()
        self.saved_label.setWordWrap(True)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(scroll, 1)
        rl.addWidget(self.saved_label)
        rl.addLayout(nav)

        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.left)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        help_label = QLabel(KEY_HELP)
        help_label.setStyleSheet("color: #555")

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        lay.addWidget(help_label)
        self.back_btn.clicked.connect(lambda: self.key_action.emit("back", None))
        self.next_btn.clicked.connect(lambda: self.key_action.emit("next", None))
        self.comment_btn.clicked.connect(lambda: self.key_action.emit("comment", None))
        self.flag_btn.clicked.connect(lambda: self.key_action.emit("flag", None))

    def keyPressEvent(self, event) -> None:  # noqa: N802 — Qt API
        key = event.key()
        if event.modifiers() & (Qt.ControlModifier | Qt.AltModifier | Qt.MetaModifier):
            return super().keyPressEvent(event)
        if key in LIKERT_KEYS:
            self.key_action.emit("rate", LIKERT_KEYS[key])
        elif key == Qt.Key_P:
            self.key_action.emit("pass", 1)
        elif key == Qt.Key_F:
            self.key_action.emit("pass", 0)
        elif key in (Qt.Key_N, Qt.Key_Right):
            self.key_action.emit("next", None)
        elif key in (Qt.Key_B, Qt.Key_Left):
            self.key_action.emit("back", None)
        elif key == Qt.Key_C:
            self.key_action.emit("comment", None)
        elif key == Qt.Key_X:
            self.key_action.emit("flag", None)
        elif key == Qt.Key_Up:
            self.key_action.emit("up", None)
        elif key == Qt.Key_Down:
            self.key_action.emit("down", None)
        else:
            return super().keyPressEvent(event)
        event.accept()

    def focusNextPrevChild(self, next_: bool) -> bool:  # noqa: N802 — Tab cycles criteria
        self.key_action.emit("down" if next_ else "up", None)
        return True


class AnnotatePage(QWidget):
    """Sign-in, then the rating panel. ``rated`` fires after each committed rating."""

    rated = Signal(object)  # annotation.ratings.Rating

    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self._study = None
        self._episodes: dict = {}
        self.campaign: str | None = None
        self.annotator: str | None = None
        self.group: str | None = None
        self.index = 0
        self.item = None  # annotation.queue.QueueItem
        self.cards: list[CriterionCard] = []
        self.active = 0
        self._shown_at = time.monotonic()
        self._pending_comment = ""

        self.sign_in_panel = SignInPanel()
        self.panel = RatingPanel()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.sign_in_panel)
        self.stack.addWidget(self.panel)
        from desktop.widgets.review_panel import ReviewPanel

        self.review_panel = ReviewPanel()
        self.review_panel.sign_out.clicked.connect(self.sign_out)
        self.stack.addWidget(self.review_panel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.stack)

        self.sign_in_panel.sign_in.connect(self.sign_in)
        self.panel.sign_out.clicked.connect(self.sign_out)
        self.panel.key_action.connect(self._on_key)
        ctx.study_changed.connect(self._on_study)
        self._on_study(ctx.study_path or "")

    # -- study ---------------------------------------------------------------------------------
    def _open(self):
        from annotation.db import open_study

        if self._study is None and self.ctx.study_path:
            self._study = open_study(self.ctx.study_path)
        return self._study

    def _on_study(self, path: str) -> None:
        if self._study is not None:
            self._study.close()
            self._study = None
        self._episodes.clear()
        self.sign_out()
        self.refresh_campaigns()

    def refresh_campaigns(self) -> None:
        if not self.ctx.study_path:
            self.sign_in_panel.set_campaigns([], "No study is open. Open one from the Study menu or the Studies page.")
            return
        from annotation.accounts import list_accounts
        from annotation.campaigns import annotator_group, list_campaigns
        from annotation.db import StudyError

        try:
            study = self._open()
            campaigns = list_campaigns(study)
            accounts = list_accounts(study)
        except StudyError as e:
            self.sign_in_panel.set_campaigns([], [], str(e))
            return
        self.sign_in_panel.set_campaigns(
            campaigns, accounts,
            "" if campaigns else "This study has no campaign yet; the study owner creates one on the Studies page.",
            membership=lambda c, n: annotator_group(study, c, n))
        self.sign_in_panel.select(self.ctx.settings.value("annotate/campaign", "") or None,
                                  self.ctx.settings.value("annotate/name", "") or None,
                                  self.ctx.settings.value("annotate/group", "") or None)

    def on_shown(self) -> None:
        if self.stack.currentWidget() is self.sign_in_panel:
            self.refresh_campaigns()
        else:
            self.panel.setFocus()

    # -- sign in / out -------------------------------------------------------------------------
    def sign_in(self, campaign: str, name: str, group: str, pin: str | None = None) -> bool:
        """Sign ``name`` (an existing account, any case) in; a reviewer gets the review view."""
        from annotation.accounts import check_pin, find_annotator, get_account
        from annotation.campaigns import add_annotator, annotator_group
        from annotation.db import StudyError
        from annotation.queue import next_item

        study = self._open()
        if study is None:
            self.sign_in_panel.error.setText("No study is open.")
            return False
        try:
            found = find_annotator(study, name)
            if found is None:
                self.sign_in_panel.error.setText(
                    f"There is no account {name!r} in this study. The study owner adds accounts on the Studies page.")
                return False
            name = found[1]
            if not check_pin(study, name, pin or None):
                self.sign_in_panel.error.setText("Wrong PIN for this account.")
                return False
            if get_account(study, name).role == "reviewer":
                return self._sign_in_reviewer(campaign, name)
            current = annotator_group(study, campaign, name)
            if current is None:
                add_annotator(study, name, group, campaign)
            elif current != group:
                self.sign_in_panel.error.setText(
                    f"{name} already rates in group {current} of this campaign; groups are independent, "
                    f"so you cannot switch. Choose group {current}.")
                return False
            nxt = next_item(study, campaign, name)
        except StudyError as e:
            self.sign_in_panel.error.setText(str(e))
            return False
        self.campaign, self.annotator, self.group = campaign, name, group
        for key, value in (("name", name), ("group", group), ("campaign", campaign)):
            self.ctx.settings.setValue(f"annotate/{key}", value)
        self.sign_in_panel.error.setText("")
        self.panel.who.setText(f"<b>{_esc(campaign)}</b> · {_esc(name)} (group {_esc(group)})")
        self.panel.next_btn.setEnabled(True)
        self.panel.comment_btn.setEnabled(True)
        self.panel.flag_btn.setEnabled(True)
        self.stack.setCurrentWidget(self.panel)
        if nxt is None:
            self._show_done()
        else:
            self.show_index(nxt.position - 1)
        self.panel.setFocus()
        return True

    def _sign_in_reviewer(self, campaign: str, name: str) -> bool:
        from annotation.db import StudyError
        from annotation.review import review_items

        try:
            items = review_items(self._study, campaign, name)
        except StudyError as e:
            self.sign_in_panel.error.setText(str(e))
            return False
        self.campaign, self.annotator, self.group = campaign, name, None
        self.ctx.settings.setValue("annotate/name", name)
        self.ctx.settings.setValue("annotate/campaign", campaign)
        self.sign_in_panel.error.setText("")
        self.review_panel.load(self._study, campaign, name, items, self._episode)
        self.stack.setCurrentWidget(self.review_panel)
        return True

    def sign_out(self) -> None:
        self.campaign = self.annotator = self.group = None
        self.item = None
        self.stack.setCurrentWidget(self.sign_in_panel)
        self.refresh_campaigns() if self.ctx.study_path and self._study is not None else None

    # -- queue ---------------------------------------------------------------------------------
    def _episode(self, episode_id: str):
        from annotation.content import load_episode

        if episode_id not in self._episodes:
            self._episodes[episode_id] = load_episode(self._study, episode_id)
        return self._episodes[episode_id]

    def _update_progress(self) -> None:
        from annotation.queue import queue_status

        st = queue_status(self._study, self.campaign, self.annotator)
        self.panel.progress_label.setText(f"{st.done} of {st.total} done")
        self.panel.progress_label.setToolTip("Items where you have rated every criterion")
        self.panel.progress.setMaximum(max(st.total, 1))
        self.panel.progress.setValue(st.done)
        self.status = st

    def show_index(self, index: int) -> None:
        from annotation.queue import queue_item_at
        from desktop.widgets.item_views import item_ref

        self.item = queue_item_at(self._study, self.campaign, self.annotator, index)
        self.index = index
        ref = item_ref(self.item.target, self.item.content)
        self.panel.item_view.show_item(self._episode(ref.episode_id), ref)
        self.panel.left.setCurrentWidget(self.panel.item_view)
        self._build_cards()
        self.panel.position_label.setText(f"Item {self.item.position} of {self.item.total}")
        self.panel.position_label.setToolTip("Where you are in your queue (Back/Next move through it)")
        self.panel.next_btn.setEnabled(True)
        self.panel.comment_btn.setEnabled(True)
        self.panel.flag_btn.setEnabled(True)
        self.panel.back_btn.setEnabled(index > 0)
        self.panel.saved_label.setText("")
        self._pending_comment = ""
        self._shown_at = time.monotonic()
        self._update_progress()

    def _show_done(self) -> None:
        self._update_progress()
        self.item = None
        self.index = self.status.total
        self._build_cards()
        self.panel.done_label.setText(
            f"<h2>Queue finished</h2><p>You rated all {self.status.total} items. Thank you!</p>"
            "<p>Press B to go back and review your ratings.</p>")
        self.panel.left.setCurrentWidget(self.panel.done_label)
        self.panel.position_label.setText("Queue finished")
        self.panel.saved_label.setText("")  # the last item's hint no longer applies
        self.panel.back_btn.setEnabled(self.status.total > 0)
        self.panel.next_btn.setEnabled(False)
        self.panel.comment_btn.setEnabled(False)
        self.panel.flag_btn.setEnabled(False)

    def _build_cards(self) -> None:
        lay = self.panel.cards_layout
        while lay.count():
            lay.takeAt(0)
        for card in self.cards:
            card.hide()
            card.setParent(None)
            card.deleteLater()
        self.cards = []
        if self.item is not None:
            for crit in self.item.criteria:
                card = CriterionCard(crit)
                card.value_clicked.connect(self._on_click)
                lay.addWidget(card)
                self.cards.append(card)
        lay.addStretch(1)
        unrated = [i for i, c in enumerate(self.cards) if c.value is None]
        self._set_active(unrated[0] if unrated else 0)

    def _set_active(self, i: int) -> None:
        if not self.cards:
            return
        self.active = i % len(self.cards)
        for k, card in enumerate(self.cards):
            card.set_active(k == self.active)

    def next_item(self) -> None:
        if self.item is None:
            return
        if self.index + 1 < self.item.total:
            self.show_index(self.index + 1)
            return
        from annotation.queue import next_item

        nxt = next_item(self._study, self.campaign, self.annotator)
        if nxt is None:
            self._show_done()
        else:
            self.show_index(nxt.position - 1)

    def back(self) -> None:
        if self.index > 0:
            self.show_index(self.index - 1)

    # -- rating --------------------------------------------------------------------------------
    def _on_key(self, action: str, value) -> None:
        if action == "next":
            self.next_item()
        elif action == "back":
            self.back()
        elif action == "comment":
            self.ask_comment()
        elif action == "flag":
            self.ask_flag()
        elif action in ("up", "down"):
            self._set_active(self.active + (1 if action == "down" else -1))
        elif action in ("rate", "pass") and self.cards:
            card = self.cards[self.active]
            wants = "likert" if action == "rate" else "passfail"
            if card.criterion.scale != wants:
                match = [i for i, c in enumerate(self.cards) if c.criterion.scale == wants]
                if not match:
                    keys = "1–5" if card.criterion.scale == "likert" else "P or F"
                    self.panel.saved_label.setText(f"<span style='color:#c53030'>{_esc(card.criterion.label)} "
                                                   f"is rated with {keys}.</span>")
                    return
                card = self.cards[match[0]]
            self.give_rating(card.criterion.name, value)

    def _on_click(self, criterion: str, value: int) -> None:
        self.give_rating(criterion, value)

    def give_rating(self, criterion: str, value: int, comment: str | None = None):
        """Commit one rating now (its own transaction); returns the stored Rating or None."""
        from annotation.db import StudyError
        from annotation.ratings import rate

        if self.item is None:
            return None
        card = next(c for c in self.cards if c.criterion.name == criterion)
        if comment is None:
            comment, self._pending_comment = self._pending_comment, ""
        try:
            r = rate(self._study, self.campaign, self.annotator, self.item.item_id, criterion, value,
                     seconds=round(time.monotonic() - self._shown_at, 3), comment=comment)
        except StudyError as e:
            card.set_value(card.value)
            self.panel.saved_label.setText(f"<span style='color:#c53030'>Not saved: {_esc(e)}</span>")
            return None
        card.set_value(r.value)
        note = " with your comment" if comment else ""
        self.panel.saved_label.setText(
            f"<span style='color:#2f855a'>Saved {_esc(card.criterion.label)} = "
            f"{'pass' if card.criterion.scale == 'passfail' and r.value else 'fail' if card.criterion.scale == 'passfail' else r.value}"
            f"{note} at {r.created_at[11:19]} UTC.</span>")
        unrated = [i for i, c in enumerate(self.cards) if c.value is None]
        if unrated:
            self._set_active(unrated[0])
        elif all(c.value is not None for c in self.cards):
            self.panel.saved_label.setText(self.panel.saved_label.text() + " All criteria rated — N for the next item.")
        self._update_progress()
        self.rated.emit(r)
        return r

    def ask_comment(self) -> None:
        if self.item is None or not self.cards:
            return
        card = self.cards[self.active]
        text, ok = QInputDialog.getMultiLineText(self, "Comment", f"Comment on {card.criterion.label} for this item:")
        if ok and text.strip():
            self.add_comment(text.strip())

    def add_comment(self, text: str) -> None:
        """Attach a comment: re-saves the active criterion's rating with it, or keeps it for the next rating."""
        card = self.cards[self.active]
        if card.value is not None:
            self.give_rating(card.criterion.name, card.value, comment=text)
        else:
            self._pending_comment = text
            self.panel.saved_label.setText("Comment kept: it is saved with your next rating on this item.")

    def ask_flag(self) -> None:
        if self.item is None:
            return
        text, ok = QInputDialog.getMultiLineText(self, "Flag this item",
                                                 "What is wrong with it? (the reviewer sees this after rating closes)")
        if ok:
            self.flag(text.strip())

    def flag(self, note: str = "") -> int | None:
        """Flag the current item for the reviewer (stored at once, append-only)."""
        from annotation.db import StudyError
        from annotation.review import flag_item

        if self.item is None:
            return None
        try:
            fid = flag_item(self._study, self.campaign, self.annotator, self.item.item_id, note)
        except StudyError as e:
            self.panel.saved_label.setText(f"<span style='color:#c53030'>Not flagged: {_esc(e)}</span>")
            return None
        self.panel.saved_label.setText("<span style='color:#2f855a'>Flagged for the reviewer.</span>")
        return fid

    def can_close(self) -> bool:
        return True
