"""The memory link graph: networkx for the structure, matplotlib (FigureCanvasQTAgg) for drawing.

Layout (EMMA paper §3.3: memories are formed per session and linked newer → older):

* x — one column per session, split into lanes by the speaker the memory is about (the owner's
  lane first), so a session's memories about the agent and about its partner sit side by side;
* y — order of arrival within the lane.

Positions are cached per node (:class:`StableLayout`): a memory keeps its place when others are
added, so the picture does not jump as a chat goes on. Nodes are coloured by the speaker the
memory is about; edges are solid for ``related`` links and dashed for ``update`` links. Nodes are
one scatter collection and, above a few hundred links, edges are line collections (not one artist
per node or edge), which keeps a redraw of 1,000+ memories interactive; small graphs get curved
arrows so links between memories in one row stay visible; ``last_draw_ms`` records the last full redraw.

Mouse: wheel zooms at the cursor, drag pans, click selects a node (``node_selected``).
"""

from __future__ import annotations

import textwrap
import time

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

SESSION_WIDTH = 3.0  # x units per session column
LANE_WIDTH = 1.0  # x units per speaker lane inside a column
ROW_HEIGHT = 1.0
CURVED_EDGES_UP_TO = 300  # above this, straight line collections (fast redraws at 1,000+ memories)
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
           "#bcbd22", "#7f7f7f"]
EDGE_STYLE = {"related": dict(linestyles="solid", colors="#8a8a8a", linewidths=0.9),
              "update": dict(linestyles=(0, (4, 3)), colors="#c05000", linewidths=1.2)}


class StableLayout:
    """Positions cached per node: new memories take the next free row of their (session, speaker)
    lane; existing ones never move. Speaker colours are fixed in order of first appearance."""

    def __init__(self):
        self.pos: dict[str, tuple[float, float]] = {}
        self.lanes: dict[int, list[str]] = {}  # session → speakers in lane order
        self.rows: dict[tuple[int, str], int] = {}  # (session, speaker) → rows used
        self.colours: dict[str, str] = {}

    def colour(self, speaker: str) -> str:
        if speaker not in self.colours:
            self.colours[speaker] = PALETTE[len(self.colours) % len(PALETTE)]
        return self.colours[speaker]

    def place(self, memory_id: str, session: int, about: str, owner: str = "") -> tuple[float, float]:
        if memory_id in self.pos:
            return self.pos[memory_id]
        lanes = self.lanes.setdefault(session, [owner])  # lane 0 is reserved for the owner
        if about not in lanes:
            lanes.append(about)
        lane = lanes.index(about)
        row = self.rows.get((session, about), 0)
        self.rows[(session, about)] = row + 1
        xy = (session * SESSION_WIDTH + lane * LANE_WIDTH, -row * ROW_HEIGHT)
        self.pos[memory_id] = xy
        return xy


class MemoryGraph(QWidget):
    node_selected = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.layout_cache = StableLayout()
        self.snapshot = None
        self.selected: str | None = None
        self.last_draw_ms = 0.0
        self._ids: list[str] = []
        self._xy = np.zeros((0, 2))
        self._press = None
        self._dragged = False

        self.figure = Figure(figsize=(6, 4), dpi=100)
        self.figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)  # axes off: no layout engine
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.ax = self.figure.add_subplot(111)
        self.canvas.mpl_connect("scroll_event", self._on_scroll)
        self.canvas.mpl_connect("button_press_event", self._on_press)
        self.canvas.mpl_connect("motion_notify_event", self._on_motion)
        self.canvas.mpl_connect("button_release_event", self._on_release)

        bar = QHBoxLayout()
        self.summary = QLabel("no memories")
        bar.addWidget(self.summary, 1)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Show the whole graph (wheel zooms, drag pans, click selects)")
        self.fit_button.clicked.connect(self.fit)
        bar.addWidget(self.fit_button)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addLayout(bar)
        box.addWidget(self.canvas, 1)

    # -- data ----------------------------------------------------------------------------------
    def set_snapshot(self, snapshot, keep_view: bool = True) -> float:
        """Show ``snapshot``; old nodes keep their positions. Returns the redraw time in ms."""
        first = self.snapshot is None or (snapshot is not None and snapshot.owner != self.snapshot.owner)
        if first:
            self.layout_cache = StableLayout()
        self.snapshot = snapshot
        if self.selected and (snapshot is None or self.selected not in snapshot.by_id()):
            self.selected = None
        return self.redraw(fit=first or not keep_view)

    def graph(self):
        return self.snapshot.graph() if self.snapshot is not None else None

    def select(self, memory_id: str | None, center: bool = False) -> None:
        self.selected = memory_id
        if center and memory_id in self.layout_cache.pos:
            x, y = self.layout_cache.pos[memory_id]
            x0, x1 = self.ax.get_xlim()
            y0, y1 = self.ax.get_ylim()
            inside = min(x0, x1) <= x <= max(x0, x1) and min(y0, y1) <= y <= max(y0, y1)
            if not inside:  # pan only when the node is out of view: the overview stays put
                w, h = (x1 - x0) / 2, (y1 - y0) / 2
                self.ax.set_xlim(x - w, x + w)
                self.ax.set_ylim(y - h, y + h)
        self.redraw()

    # -- drawing ---------------------------------------------------------------------------------
    def redraw(self, fit: bool = False) -> float:
        t0 = time.perf_counter()
        view = (self.ax.get_xlim(), self.ax.get_ylim())
        ax = self.ax
        ax.clear()
        ax.set_axis_off()
        snap = self.snapshot
        g = snap.graph() if snap is not None else None
        if g is None or g.number_of_nodes() == 0:
            ax.text(0.5, 0.5, "No memories yet — they are stored when a session ends.", ha="center",
                    va="center", transform=ax.transAxes, color="#666666")
            self._ids, self._xy = [], np.zeros((0, 2))
            self.summary.setText("no memories")
            self.canvas.draw()
            self.last_draw_ms = (time.perf_counter() - t0) * 1000
            return self.last_draw_ms
        lay = self.layout_cache
        for speaker in snap.speakers():
            lay.colour(speaker)
        nodes = sorted(g.nodes(data=True), key=lambda n: (n[1]["session"], n[0]))
        self._ids = [n for n, _ in nodes]
        self._xy = np.array([lay.place(n, a["session"], a["about"], snap.owner) for n, a in nodes], dtype=float)
        index = {n: i for i, n in enumerate(self._ids)}
        colours = [lay.colour(a["about"]) for _, a in nodes]

        # session columns and their labels (partner name when the column has one)
        sessions = sorted({a["session"] for _, a in nodes})
        x_span = (max(sessions) - min(sessions) + 1) * SESSION_WIDTH + 4.5
        px_per_session = self.canvas.width() * SESSION_WIDTH / x_span
        step = max(1, int(np.ceil(40 / max(px_per_session, 1))))  # label every step-th column when crowded
        top = 1.2
        bands, band_colours = [], []
        for s in sessions:
            x0 = s * SESSION_WIDTH - 0.5
            width = max(len(lay.lanes.get(s, [])), 1) * LANE_WIDTH
            bands.append([(x0, 0), (x0 + width, 0), (x0 + width, 1), (x0, 1)])
            band_colours.append("#f2f2f2" if s % 2 == 0 else "#e8eef6")
            if s % step:
                continue
            partners = [p for p in lay.lanes.get(s, [])[1:] if p != snap.owner]
            label = f"S{s + 1}"
            if partners and px_per_session >= 70:
                label += f"\n{partners[0]}"
            ax.text(x0 + width / 2, top, label, ha="center", va="bottom", fontsize=8, color="#333333", clip_on=True)
        # one collection for all session bands (x in data, y spanning the axes)
        ax.add_collection(PolyCollection(bands, facecolors=band_colours, edgecolors="none", zorder=0,
                                         transform=ax.get_xaxis_transform()), autolim=False)
        self._hover = ax.annotate("", (0, 0), xytext=(8, 6), textcoords="offset points", fontsize=8, zorder=6,
                                  visible=False, bbox=dict(boxstyle="round,pad=0.25", fc="#ffffe8", ec="#999999"))

        n_nodes = len(self._ids)
        size = 60 if n_nodes <= 100 else (30 if n_nodes <= 600 else 14)
        neighbours: set[str] = set()
        if self.selected in index:
            neighbours = set(g.successors(self.selected)) | set(g.predecessors(self.selected))
        sel_edges = set()
        if self.selected in index:
            sel_edges = set(g.in_edges(self.selected)) | set(g.out_edges(self.selected))
        if g.number_of_edges() <= CURVED_EDGES_UP_TO:
            # few links: curved arrows (newer → older), so links between memories of one row stay visible
            for u, v, a in g.edges(data=True):
                style = EDGE_STYLE.get(a.get("kind"), EDGE_STYLE["related"])
                hot = (u, v) in sel_edges
                ax.add_patch(FancyArrowPatch(
                    self._xy[index[u]], self._xy[index[v]], connectionstyle="arc3,rad=0.3", arrowstyle="-|>",
                    mutation_scale=9, shrinkA=4, shrinkB=4, zorder=2 if hot else 1,
                    color="#111111" if hot else style["colors"], lw=2.0 if hot else style["linewidths"],
                    linestyle="--" if a.get("kind") == "update" else "-", alpha=1.0 if hot else 0.8))
        else:
            for kind, style in EDGE_STYLE.items():
                segs = [(self._xy[index[u]], self._xy[index[v]]) for u, v, a in g.edges(data=True)
                        if a.get("kind") == kind]
                if segs:
                    ax.add_collection(LineCollection(segs, zorder=1, alpha=0.75, **style))
            if sel_edges:
                segs = [(self._xy[index[u]], self._xy[index[v]]) for u, v in sel_edges]
                ax.add_collection(LineCollection(segs, zorder=2, colors="#111111", linewidths=2.0))
        ax.scatter(self._xy[:, 0], self._xy[:, 1], s=size, c=colours, zorder=3, edgecolors="white", linewidths=0.6)
        if self.selected in index:
            i = index[self.selected]
            ax.scatter([self._xy[i, 0]], [self._xy[i, 1]], s=size * 3.5, facecolors="none", edgecolors="#111111",
                       linewidths=2.0, zorder=4)
            for nb in sorted(neighbours):
                j = index[nb]
                ax.scatter([self._xy[j, 0]], [self._xy[j, 1]], s=size * 2.2, facecolors="none",
                           edgecolors="#555555", linewidths=1.2, zorder=4)
            short = textwrap.fill(textwrap.shorten(g.nodes[self.selected]["text"], 90, placeholder="…"), 36)
            ax.annotate(short, self._xy[i], xytext=(10, -10), textcoords="offset points", fontsize=8, zorder=6,
                        va="top", bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="#777777", alpha=0.95))

        handles = [Line2D([], [], marker="o", ls="", color=lay.colour(s), label=f"about {s}") for s in snap.speakers()]
        handles += [Line2D([], [], color=EDGE_STYLE["related"]["colors"], label="related link"),
                    Line2D([], [], color=EDGE_STYLE["update"]["colors"], ls="--", label="update link")]
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)
        if fit:
            self._fit_limits()
        else:
            ax.set_xlim(*view[0])
            ax.set_ylim(*view[1])
        links = g.number_of_edges()
        self.summary.setText(f"{n_nodes} memories · {links} links · {len(sessions)} sessions — "
                             "wheel: zoom, drag: pan, click: inspect")
        self.canvas.draw()
        self.last_draw_ms = (time.perf_counter() - t0) * 1000
        return self.last_draw_ms

    def _fit_limits(self):
        if len(self._xy) == 0:
            return
        x0, y0 = self._xy.min(axis=0)
        x1, y1 = self._xy.max(axis=0)
        self.ax.set_xlim(x0 - 1.0, x1 + 3.5)  # room on the right for labels
        self.ax.set_ylim(min(y0 - 1.5, -8.0), max(y1, 0) + 2.0)  # short columns sit under their labels

    def fit(self):
        self._fit_limits()
        self.canvas.draw_idle()

    # -- mouse ---------------------------------------------------------------------------------
    def _on_scroll(self, event):
        if event.xdata is None:
            return
        factor = 0.8 if event.button == "up" else 1.25
        x0, x1 = self.ax.get_xlim()
        y0, y1 = self.ax.get_ylim()
        cx, cy = event.xdata, event.ydata
        self.ax.set_xlim(cx - (cx - x0) * factor, cx + (x1 - cx) * factor)
        self.ax.set_ylim(cy - (cy - y0) * factor, cy + (y1 - cy) * factor)
        self.canvas.draw_idle()

    def _on_press(self, event):
        if event.button == 1 and event.x is not None:
            self._press = (event.x, event.y, self.ax.get_xlim(), self.ax.get_ylim())
            self._dragged = False

    def _on_motion(self, event):
        if event.x is None:
            return
        if self._press is None:
            self._update_hover(event)
            return
        px, py, (x0, x1), (y0, y1) = self._press
        dx, dy = event.x - px, event.y - py
        if abs(dx) + abs(dy) < 4 and not self._dragged:
            return
        self._dragged = True
        bbox = self.ax.bbox
        sx = (x1 - x0) / max(bbox.width, 1)
        sy = (y1 - y0) / max(bbox.height, 1)
        self.ax.set_xlim(x0 - dx * sx, x1 - dx * sx)
        self.ax.set_ylim(y0 - dy * sy, y1 - dy * sy)
        self.canvas.draw_idle()

    def _update_hover(self, event):
        hover = getattr(self, "_hover", None)
        if hover is None or self.snapshot is None:
            return
        hit = self.node_at(event.x, event.y)
        if hit is None:
            if hover.get_visible():
                hover.set_visible(False)
                self.canvas.draw_idle()
            return
        m = self.snapshot.by_id()[hit]
        hover.xy = self._xy[self._ids.index(hit)]
        hover.set_text(f"{hit} · about {m.about} · S{m.session + 1}\n" + textwrap.fill(m.text, 50))
        hover.set_visible(True)
        self.canvas.draw_idle()

    def _on_release(self, event):
        press, self._press = self._press, None
        if press is None or self._dragged or event.x is None:
            return
        hit = self.node_at(event.x, event.y)
        if hit is not None:
            self.select(hit)
            self.node_selected.emit(hit)

    def node_at(self, px: float, py: float, radius_px: float = 9.0) -> str | None:
        """The node nearest to display point (px, py) within ``radius_px`` pixels."""
        if len(self._xy) == 0:
            return None
        disp = self.ax.transData.transform(self._xy)
        d = np.hypot(disp[:, 0] - px, disp[:, 1] - py)
        i = int(np.argmin(d))
        return self._ids[i] if d[i] <= radius_px else None

    def display_point(self, memory_id: str) -> tuple[float, float]:
        """Where ``memory_id`` is drawn, in display pixels (tests click there)."""
        i = self._ids.index(memory_id)
        x, y = self.ax.transData.transform(self._xy[i])
        return float(x), float(y)
