"""Memory page and link graph: filters, inspector, click-to-select, stable layout, redraw at 1,000+."""

import random
import time

import pytest
from PySide6.QtCore import QPoint, Qt

from desktop.memory_snapshot import MemorySnapshot

pytestmark = pytest.mark.gui


def snapshot(n=30, sessions=5, seed=0):
    rnd = random.Random(seed)
    partners = ["Bob", "Carol", "Dan"]
    mems, links = [], []
    for i in range(n):
        s = i * sessions // n
        about = "Alice" if i % 2 else partners[s % 3]
        mems.append({"id": f"m{i}", "about": about, "session": s, "text": f"memory {i} about {about}",
                     "source_turns": [f"s{s}t0"],
                     "versions": [{"action": "created", "by": "agent", "at": 1.7e9, "text": f"memory {i}"}]})
        if i:
            links.append({"src": f"m{i}", "dst": f"m{rnd.randrange(i)}", "kind": "update" if i % 7 == 0 else "related"})
    return MemorySnapshot.from_worker({"owner": "Alice", "memories": mems, "links": links},
                                      title="test chat", turn_text={"s0t0": "Bob: I adopted a cat."})


@pytest.fixture
def page(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLAB_NO_ENGINE", "1")
    from desktop.context import AppContext
    from desktop.pages.memory import MemoryPage

    ctx = AppContext(settings_path=tmp_path / "s.ini", data_dir=tmp_path)
    p = MemoryPage(ctx)
    qtbot.addWidget(p)
    p.resize(1200, 760)
    p.show()
    ctx.memory_changed.emit(snapshot())
    return ctx, p


def test_filters_by_speaker_session_and_text(page):
    ctx, p = page
    assert p.table.rowCount() == 30
    p.about_filter.setCurrentText("Alice")
    assert p.table.rowCount() == 15
    assert {p.table.item(r, 1).text() for r in range(p.table.rowCount())} == {"Alice"}
    p.session_filter.setCurrentText("1")
    assert {p.table.item(r, 2).text() for r in range(p.table.rowCount())} == {"1"}
    p.about_filter.setCurrentText("(all)")
    p.session_filter.setCurrentText("(all)")
    p.text_filter.setText("memory 2")
    assert {p.table.item(r, 0).text() for r in range(p.table.rowCount())} == {"m2"} | {f"m{i}" for i in range(20, 30)}
    assert "11 of 30" in p.count_label.text()


def test_clicking_a_node_shows_it_in_the_inspector(page, qtbot):
    ctx, p = page
    g = p.graph
    x, y = g.display_point("m4")
    h = g.canvas.height()
    ratio = g.canvas.device_pixel_ratio
    qtbot.mouseClick(g.canvas, Qt.MouseButton.LeftButton, pos=QPoint(int(x / ratio), int(h - y / ratio)))
    assert g.selected == "m4"
    text = p.inspector.toPlainText()
    assert "memory 4 about" in text and "Links" in text and "Source turns" in text and "Versions" in text
    assert p.table.selectedItems()[0].text() == "m4"


def test_layout_is_stable_when_memories_are_added(page):
    ctx, p = page
    before = dict(p.graph.layout_cache.pos)
    bigger = snapshot(45, sessions=7)
    # same ids keep their data; new ids arrive in later sessions
    ctx.memory_changed.emit(bigger)
    after = p.graph.layout_cache.pos
    assert all(after[k] == v for k, v in before.items())
    assert len(after) == 45


def test_navigating_to_a_memory_selects_it(page):
    ctx, p = page
    ctx.navigate_requested.connect(lambda key, payload: key == "memory" and p.navigate_to(payload))  # the window's job
    ctx.show_memory(snapshot(), "m9")
    assert p.graph.selected == "m9" and "memory 9" in p.inspector.toPlainText()


def test_edits_are_disabled_for_a_read_only_snapshot(page):
    ctx, p = page
    p.select("m3")
    assert not p.edit_button.isEnabled() and "live agent" in p.edit_button.toolTip()


def test_large_graphs_draw_every_memory_and_keep_old_positions(page):
    """1,000 then 2,000 memories: every node is drawn and the first 1,000 do not move (timing: bench/ui.py)."""
    ctx, p = page
    p.graph.snapshot = None
    p.graph.set_snapshot(snapshot(1000, sessions=20, seed=1))
    p.graph.redraw()
    before = dict(zip(p.graph._ids, map(tuple, p.graph._xy)))
    assert len(before) == 1000 and p.graph.last_draw_ms > 0
    p.graph.set_snapshot(snapshot(2000, sessions=40, seed=1))  # same first 1,000 memories
    p.graph.redraw()
    after = dict(zip(p.graph._ids, map(tuple, p.graph._xy)))
    assert len(after) == 2000
    moved = [m for m, xy in before.items() if m in after and after[m] != xy]
    assert not moved, f"{len(moved)} existing memories moved when more were added"


def test_opens_the_memory_of_an_episode_file(page, tmp_path):
    from engine.data.episode_format import write_episodes
    from engine.data.model import Episode, Link, Memory, Session, Speaker, Turn

    ctx, p = page
    bob = Speaker("Bob", "neighbour")
    ep = Episode("ep-1", Speaker("Alice", "teacher"), [bob],
                 [Session(0, bob, "", [Turn("s0t0", "Bob", "I adopted a cat called Milo.")])],
                 [Memory("m0", "Alice", "Bob", "Bob adopted a cat called Milo.", 0, ["s0t0"]),
                  Memory("m1", "Alice", "Alice", "I asked about Bob's cat.", 0, ["s0t0"])],
                 [Link("m1", "m0", "related")])
    path = write_episodes(tmp_path / "eps.json", [ep])
    p.open_episodes(path)
    assert p.table.rowCount() == 2 and "read-only" in p.title.text()
    p.select("m0")
    assert "Bob: I adopted a cat called Milo." in p.inspector.toPlainText()


def test_parameterised_memory_shows_partner_adapters_instead_of_a_graph(page):
    _, page = page
    adapters = [{"partner": "Ann", "name": "p_ann_1", "theta": {"alpha": [1, 0, 1], "n": 2, "r": 8},
                 "theta_text": "n=2 r=8 on 2/3 layers 0,2", "parameters": 12_288, "size_bytes": 24_576,
                 "trained_turns": 6, "loss": 2.345, "steps": 8, "sessions": 2, "seconds": 40.0,
                 "status": "max-steps", "active": True},
                {"partner": "Bob", "name": "p_bob_2", "theta": {"alpha": [1, 1, 1], "n": 1, "r": 8},
                 "theta_text": "n=1 r=8 on 3/3 layers 0-2", "parameters": 9_216, "size_bytes": 18_432,
                 "trained_turns": 3, "loss": None, "steps": 0, "sessions": 1, "seconds": 1.0, "status": "cancelled"}]
    snap = MemorySnapshot.from_worker({"owner": "Doctor", "memories": [], "links": [], "adapters": adapters},
                                      title="milp chat")
    assert snap.to_dict()["adapters"] == adapters
    page.set_snapshot(snap)
    assert page.views.currentWidget() is page.adapter_view
    table = page.adapter_view.table
    assert table.rowCount() == 2 and table.item(0, 0).text().startswith("Ann") and table.item(1, 6).text() == "—"
    assert "█·█" in page.adapter_view.details.toPlainText()
    assert "2 partner adapters" in page.title.text()
    page.set_snapshot(snapshot())  # a text-memory system again: the list and graph come back
    assert page.views.currentIndex() == 0
