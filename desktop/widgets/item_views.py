"""Show one annotation item in the form its criterion needs (MiSC protocol, EMMA paper §3.3–§3.4).

The four forms, one per item kind:

* ``episode`` — every session of an episode in order (model quality: Humanness, Engagingness,
  Memorability, §5.3; dataset quality when rated per episode);
* ``session`` — a whole session transcript (dataset quality: Consistency, Coherence, §5.2);
* ``memory`` — one egocentric memory sentence with the session it was summarised from, its
  source turns highlighted (§3.3 "Memory Generation" → Summarisation check);
* ``link`` — a pair of memories, newer → older, highlighted on a small link graph of the
  episode (§3.3 "Memory Connection" → Linking check);
* ``tag`` — one utterance with the memory it is tagged with, in its dialogue context
  (§3.3 "Memory Tagging" → Tagging check).

Every view takes an :class:`engine.data.model.Episode` and the ids that pick the item, so the
annotation core only has to give back the episode and the item's references. Nothing here shows
or can reach a rating: the views are blind by construction.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QLabel,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from engine.data.model import Episode, Memory, Session

ITEM_KINDS = ("episode", "session", "memory", "link", "tag")

# One colour per role, used by the transcript and the graph alike.
MAIN_COLOUR = "#2b6cb0"
PARTNER_COLOURS = ("#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b")
HIGHLIGHT_BG = "#fff3bf"


@dataclass
class ItemRef:
    """What one annotation item points at inside an episode.

    ``kind`` is one of :data:`ITEM_KINDS`; ``session`` is the session index for ``session`` items;
    ``memory_id`` the memory for ``memory``/``tag`` items and the newer memory of a ``link``;
    ``other_memory_id`` the older memory of a ``link``; ``turn_id`` the tagged utterance.
    """

    kind: str
    episode_id: str
    session: int | None = None
    memory_id: str | None = None
    other_memory_id: str | None = None
    turn_id: str | None = None
    link_kind: str | None = None
    extra: dict = field(default_factory=dict)


def item_ref(target: str, content: dict) -> ItemRef:
    """An :class:`ItemRef` from :func:`annotation.queue.item_content`'s dict."""
    ep = content["episode"]
    if target == "episode":
        return ItemRef("episode", ep)
    if target == "session":
        return ItemRef("session", ep, session=content["session"]["idx"])
    if target == "memory":
        return ItemRef("memory", ep, memory_id=content["memory"]["id"])
    if target == "link":
        return ItemRef("link", ep, memory_id=content["newer"]["id"], other_memory_id=content["older"]["id"],
                       link_kind=content.get("kind"))
    if target == "tag":
        return ItemRef("tag", ep, memory_id=content["memory"]["id"], turn_id=content["utterance"]["id"])
    raise ValueError(f"unknown item target {target!r}")


def speaker_colour(episode: Episode, name: str) -> str:
    if name == episode.main.name:
        return MAIN_COLOUR
    names = [p.name for p in episode.partners]
    i = names.index(name) if name in names else len(names)
    return PARTNER_COLOURS[i % len(PARTNER_COLOURS)]


def _esc(text: str) -> str:
    return html.escape(text or "", quote=False)


def session_header_html(episode: Episode, session: Session) -> str:
    when = f" · {_esc(session.date)}" if session.date else ""
    event = f"<div style='color:#555'>{_esc(session.event)}</div>" if session.event else ""
    return (
        f"<div style='font-size:11pt'><b>Session {session.index + 1}</b>{when} · "
        f"<span style='color:{MAIN_COLOUR}'>{_esc(episode.main.label())}</span> with "
        f"<span style='color:{speaker_colour(episode, session.partner.name)}'>"
        f"{_esc(session.partner.label())}</span></div>{event}"
    )


def transcript_html(episode: Episode, session: Session, *, highlight: set[str] = frozenset(),
                    only: set[str] | None = None) -> str:
    """A session as HTML: one row per turn, speaker in its colour, ``highlight`` turns marked."""
    rows = []
    for turn in session.turns:
        if only is not None and turn.id not in only:
            continue
        bg = f" bgcolor='{HIGHLIGHT_BG}'" if turn.id in highlight else ""
        rows.append(
            f"<tr{bg}><td valign='top' style='padding:3px 8px 3px 2px; white-space:nowrap'>"
            f"<b style='color:{speaker_colour(episode, turn.speaker)}'>{_esc(turn.speaker)}</b></td>"
            f"<td style='padding:3px 2px'>{_esc(turn.text)}</td></tr>"
        )
    if not rows:
        rows.append("<tr><td><i>(no turns)</i></td></tr>")
    return "<table width='100%' cellspacing='0'>" + "".join(rows) + "</table>"


def given_memory_ids(episode: Episode) -> set[str]:
    """Memories given before the conversation (persona lines); see :func:`annotation.content.given_memory_ids`."""
    from annotation.content import given_memory_ids as given

    return given(episode)


def memory_box_html(episode: Episode, memory: Memory, *, label: str = "") -> str:
    about = memory.about
    whose = "self" if about == episode.main.name else about
    caption = f"{_esc(label)} · " if label else ""
    origin = ("persona line, given before the conversation" if memory.id in given_memory_ids(episode)
              else f"formed in session {memory.session + 1}")
    return (
        f"<table width='100%' cellpadding='8' style='background:#f1f5fb; border:1px solid #b9c6da'>"
        f"<tr><td><div style='color:#555; font-size:9pt'>{caption}{_esc(episode.main.name)}'s memory about "
        f"<b style='color:{speaker_colour(episode, about)}'>{_esc(whose)}</b> · {origin}</div>"
        f"<div style='font-size:13pt; margin-top:4px'>{_esc(memory.text)}</div></td></tr></table>"
    )


def context_html(episode: Episode, before_session: int | None) -> str:
    """What the speakers bring to a session: the persona lines given before the conversation and
    the main speaker's memories from earlier sessions — what Consistency ("no contradiction in
    dialogue and memory", MiSC Appendix F) is judged against. Empty when there is none."""
    given = given_memory_ids(episode)
    persona = [m for m in episode.memories if m.id in given]
    earlier = [m for m in episode.memories if m.id not in given
               and (before_session is not None and m.session < before_session)]
    if not persona and not earlier:
        return ""
    parts = []
    by_about: dict[str, list[Memory]] = {}
    for m in persona:
        by_about.setdefault(m.about, []).append(m)
    for about, ms in by_about.items():
        whose = f"{_esc(episode.main.name)}'s persona" if about == episode.main.name else f"{_esc(about)}'s persona"
        lines = "".join(f"<li>{_esc(m.text)}</li>" for m in ms)
        parts.append(f"<div><b style='color:{speaker_colour(episode, about)}'>{whose}</b> "
                     f"<span style='color:#666'>(given before the conversation)</span><ul style='margin:2px 0 4px 0'>{lines}</ul></div>")
    if earlier:
        lines = "".join(f"<li><span style='color:#666'>session {m.session + 1}, about {_esc(m.about)}:</span> "
                        f"{_esc(m.text)}</li>" for m in earlier)
        parts.append(f"<div><b>{_esc(episode.main.name)}'s memories from earlier sessions</b>"
                     f"<ul style='margin:2px 0 4px 0'>{lines}</ul></div>")
    return ("<div style='background:#f7f9fc; border:1px solid #d5dde8; padding:6px'>"
            "<div style='color:#555; font-size:9pt'>Context for this item — check the dialogue against it</div>"
            + "".join(parts) + "</div>")


class _HtmlView(QTextBrowser):
    """A read-only, link-free HTML panel (no navigation that could leave the item)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setReadOnly(True)
        self.setFocusPolicy(Qt.NoFocus)  # keys belong to the rating page, not to this panel


class TranscriptView(QWidget):
    """Form for ``session`` items: the whole session transcript."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.header = QLabel()
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.RichText)
        self.context = _HtmlView()
        self.context.setMaximumHeight(150)
        self.body = _HtmlView()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.header)
        lay.addWidget(self.context)
        lay.addWidget(self.body, 1)

    def _set_context(self, episode: Episode, before_session: int | None) -> None:
        text = context_html(episode, before_session)
        self.context.setHtml(text)
        self.context.setVisible(bool(text))

    def show_session(self, episode: Episode, index: int) -> None:
        session = episode.sessions[index]
        self.header.setText(session_header_html(episode, session))
        self._set_context(episode, index)
        self.body.setHtml(transcript_html(episode, session))

    def show_episode(self, episode: Episode) -> None:
        partners = ", ".join(_esc(p.label()) for p in episode.partners)
        self.header.setText(
            f"<div style='font-size:11pt'><b>Episode</b> · {len(episode.sessions)} sessions · "
            f"<span style='color:{MAIN_COLOUR}'>{_esc(episode.main.label())}</span> with {partners}</div>")
        self._set_context(episode, None)
        parts = [f"<div style='margin-top:10px'>{session_header_html(episode, s)}</div>{transcript_html(episode, s)}"
                 for s in episode.sessions]
        self.body.setHtml("".join(parts))


class MemorySentenceView(QWidget):
    """Form for ``memory`` items: the sentence, and the session it came from (source turns marked)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.memory_box = QLabel()
        self.memory_box.setWordWrap(True)
        self.memory_box.setTextFormat(Qt.RichText)
        self.source_header = QLabel()
        self.source_header.setWordWrap(True)
        self.source_header.setTextFormat(Qt.RichText)
        self.body = _HtmlView()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.memory_box)
        lay.addWidget(self.source_header)
        lay.addWidget(self.body, 1)

    def show_memory(self, episode: Episode, memory_id: str) -> None:
        memory = episode.memory(memory_id)
        session = episode.sessions[memory.session]
        self.memory_box.setText(memory_box_html(episode, memory))
        if memory.id in given_memory_ids(episode):
            note = ("<b>Persona line</b> — given to the speaker before the conversation, not summarised from any turn; "
                    "no turns are highlighted. The conversation is shown so you can judge it as a memory.")
        elif memory.source_turns:
            note = "<b>Source session</b> (highlighted: the turns it summarises)"
        else:
            note = ("<b>Source session</b> — no source turns were recorded for this memory; judge it against the "
                    "whole session")
        self.source_header.setText(note + "<br>" + session_header_html(episode, session))
        self.body.setHtml(transcript_html(episode, session, highlight=set(memory.source_turns)))


class LinkGraphCanvas(QWidget):
    """A small matplotlib drawing of the episode's memory link graph with one pair highlighted.

    Nodes are laid out in columns by session (older left), coloured by the speaker the memory is
    about; the highlighted pair is drawn large with a thick edge. Only the pair's neighbourhood
    (memories linked to either of them, plus the pair's sessions) is drawn, so the picture stays
    readable on long episodes. matplotlib is imported on first use, not at app start.
    """

    MAX_NODES = 40

    def __init__(self, parent=None):
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.6), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.canvas.setMinimumHeight(180)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)
        self.drawn_nodes: list[str] = []

    def _neighbourhood(self, episode: Episode, a: str, b: str) -> list[Memory]:
        keep = {a, b}
        for link in episode.links:
            if link.src in (a, b) or link.dst in (a, b):
                keep.update((link.src, link.dst))
        sessions = {episode.memory(a).session, episode.memory(b).session}
        for m in episode.memories:
            if len(keep) >= self.MAX_NODES:
                break
            if m.session in sessions:
                keep.add(m.id)
        return [m for m in episode.memories if m.id in keep]

    def show_pair(self, episode: Episode, newer: str, older: str) -> None:
        import networkx as nx

        nodes = self._neighbourhood(episode, newer, older)
        ids = {m.id for m in nodes}
        g = nx.DiGraph()
        for m in nodes:
            g.add_node(m.id)
        for link in episode.links:
            if link.src in ids and link.dst in ids:
                g.add_edge(link.src, link.dst, kind=link.kind)
        pair_edge = (newer, older)
        # Stable layout: x = session column, y = order within the session.
        pos, per_session = {}, {}
        for m in nodes:
            k = per_session.setdefault(m.session, 0)
            per_session[m.session] = k + 1
            pos[m.id] = (m.session, -k)
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        ax.set_axis_off()
        colours = [speaker_colour(episode, episode.memory(n).about) for n in g.nodes]
        sizes = [420 if n in pair_edge else 140 for n in g.nodes]
        other = [e for e in g.edges if e != pair_edge]
        nx.draw_networkx_edges(g, pos, edgelist=other, ax=ax, edge_color="#999999", width=1.0,
                               style=[("dashed" if g.edges[e]["kind"] == "update" else "solid") for e in other],
                               arrows=True, arrowsize=8, node_size=sizes)
        nx.draw_networkx_edges(g, pos, edgelist=[pair_edge], ax=ax, edge_color="#d69e2e", width=3.0,
                               arrows=True, arrowsize=14, node_size=sizes,
                               connectionstyle="arc3,rad=0.15" if pos[newer][0] == pos[older][0] else "arc3")
        nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=sizes,
                               edgecolors=["#d69e2e" if n in pair_edge else "white" for n in g.nodes],
                               linewidths=[3 if n in pair_edge else 1 for n in g.nodes])
        for node, label in ((newer, "newer"), (older, "older")):
            ax.annotate(label, pos[node], xytext=(0, 13), textcoords="offset points", ha="center", va="bottom",
                        fontsize=8, color="#222222",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#d69e2e", "lw": 0.8})
        from matplotlib.lines import Line2D

        abouts = sorted({episode.memory(n).about for n in g.nodes}, key=lambda a: (a != episode.main.name, a))
        handles = [Line2D([], [], marker="o", linestyle="", markersize=7, color=speaker_colour(episode, a),
                          label=("self" if a == episode.main.name else a)) for a in abouts]
        handles += [Line2D([], [], color="#999999", label="related"),
                    Line2D([], [], color="#999999", linestyle="--", label="update")]
        ax.legend(handles=handles, fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(len(handles), 7),
                  frameon=False, title="memory about · link kind", title_fontsize=7, alignment="left")
        sessions = sorted(per_session)
        for s in sessions:
            ax.text(s, 0.75, f"session {s + 1}", ha="center", va="bottom", fontsize=8, color="#555555")
        ax.margins(0.15, 0.2)
        self.drawn_nodes = list(g.nodes)
        self.canvas.draw_idle()


class MemoryPairView(QWidget):
    """Form for ``link`` items: newer memory → older memory, and the pair on the link graph."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pair_box = QLabel()
        self.pair_box.setWordWrap(True)
        self.pair_box.setTextFormat(Qt.RichText)
        self.graph: LinkGraphCanvas | None = None  # built on first use (matplotlib is lazy)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._lay.addWidget(self.pair_box)

    def show_pair(self, episode: Episode, newer: str, older: str, link_kind: str | None = None) -> None:
        a, b = episode.memory(newer), episode.memory(older)
        kind = f" (proposed link: <b>{_esc(link_kind)}</b>)" if link_kind else ""
        self.pair_box.setText(
            memory_box_html(episode, a, label="newer") + f"<div style='margin:4px'>links to ↓{kind}</div>"
            + memory_box_html(episode, b, label="older")
        )
        if self.graph is None:
            self.graph = LinkGraphCanvas()
            self._lay.addWidget(self.graph, 1)
        self.graph.show_pair(episode, newer, older)


class TaggedUtteranceView(QWidget):
    """Form for ``tag`` items: the utterance in context and the memory it is tagged with."""

    CONTEXT_TURNS = 2

    def __init__(self, parent=None):
        super().__init__(parent)
        self.header = QLabel()
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.RichText)
        self.body = _HtmlView()
        self.body.setMaximumHeight(260)
        self.memory_box = QLabel()
        self.memory_box.setWordWrap(True)
        self.memory_box.setTextFormat(Qt.RichText)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.header)
        lay.addWidget(self.body, 1)
        lay.addWidget(QLabel("<b>Tagged memory</b> — does this utterance use it?"))
        lay.addWidget(self.memory_box)
        lay.addStretch(0)

    def show_tag(self, episode: Episode, turn_id: str, memory_id: str) -> None:
        for session, turn in episode.turns():
            if turn.id == turn_id:
                break
        else:
            raise KeyError(turn_id)
        pos = [t.id for t in session.turns].index(turn_id)
        context = {t.id for t in session.turns[max(0, pos - self.CONTEXT_TURNS): pos + 1]}
        self.header.setText(session_header_html(episode, session) + "<div style='margin-top:6px'><b>Utterance</b> (highlighted) in context</div>")
        self.body.setHtml(transcript_html(episode, session, highlight={turn_id}, only=context))
        self.memory_box.setText(memory_box_html(episode, episode.memory(memory_id)))


class ItemView(QStackedWidget):
    """Switches to the right form for an :class:`ItemRef` and shows it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.transcript = TranscriptView()
        self.memory = MemorySentenceView()
        self.pair = MemoryPairView()
        self.tag = TaggedUtteranceView()
        self.empty = QLabel("No item.")
        self.empty.setAlignment(Qt.AlignCenter)
        for w in (self.empty, self.transcript, self.memory, self.pair, self.tag):
            self.addWidget(w)
        self.kind: str | None = None

    def clear(self, message: str = "No item.") -> None:
        self.empty.setText(message)
        self.setCurrentWidget(self.empty)
        self.kind = None

    def show_item(self, episode: Episode, ref: ItemRef) -> None:
        if ref.kind == "episode":
            self.transcript.show_episode(episode)
            self.setCurrentWidget(self.transcript)
        elif ref.kind == "session":
            self.transcript.show_session(episode, int(ref.session or 0))
            self.setCurrentWidget(self.transcript)
        elif ref.kind == "memory":
            self.memory.show_memory(episode, ref.memory_id)
            self.setCurrentWidget(self.memory)
        elif ref.kind == "link":
            self.pair.show_pair(episode, ref.memory_id, ref.other_memory_id, ref.link_kind)
            self.setCurrentWidget(self.pair)
        elif ref.kind == "tag":
            self.tag.show_tag(episode, ref.turn_id, ref.memory_id)
            self.setCurrentWidget(self.tag)
        else:
            raise ValueError(f"unknown item kind {ref.kind!r}; expected one of {', '.join(ITEM_KINDS)}")
        self.kind = ref.kind
