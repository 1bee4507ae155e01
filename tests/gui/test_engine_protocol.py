"""What the engine worker sends back: plain data only (the UI process must never import torch to
unpickle a reply), and memory snapshots with versions from the real engine.memory store."""

import numpy as np

from desktop.engine_worker import _plain
from desktop.memory_snapshot import MemorySnapshot


class _VersionString(str):
    """Stands in for torch.torch_version.TorchVersion (a str subclass)."""


def test_replies_hold_only_builtin_types():
    out = _plain({"torch": _VersionString("2.13.0"), "score": np.float64(0.5), "n": np.int64(3),
                  "vec": np.arange(3), "flag": np.bool_(True), "nested": [(1, "a")]})
    assert type(out["torch"]) is str and type(out["score"]) is float and type(out["n"]) is int
    assert out["vec"] == [0, 1, 2] and out["flag"] is True and out["nested"] == [[1, "a"]]


def test_memory_snapshot_carries_source_turns_links_and_versions():
    from engine.data.model import Speaker
    from engine.memory import MemoryStore

    store = MemoryStore("Alice")
    a = store.add("Bob", "Bob has a cat called Milo.", 0, ["s0t0"])
    b = store.add("Bob", "Bob's cat Milo is two.", 1, ["s1t2"])
    store.link(b.id, a.id, "update")
    store.edit(a.id, "Bob has a cat, Milo.")
    c = store.add("Alice", "I teach maths.", 1)
    store.delete(c.id)
    from engine.memory.view import store_view

    data = store_view(store, Speaker("Alice", "teacher").name)
    snap = MemorySnapshot.from_worker(data)
    assert snap.owner == "Alice" and {m.id for m in snap.live()} == {a.id, b.id}
    first = snap.by_id()[a.id]
    assert first.text == "Bob has a cat, Milo." and first.source_turns == ["s0t0"]
    assert [v["action"] for v in first.versions] == ["created", "edit"]
    assert snap.links == [(b.id, a.id, "update")]
    g = snap.graph()
    assert g.edges[b.id, a.id]["kind"] == "update" and g.nodes[a.id]["about"] == "Bob"
