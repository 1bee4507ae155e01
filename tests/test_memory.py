"""Egocentric memory store (EMMA paper §3.3): links newer → older, nothing lost, cached vectors."""

import json

import numpy as np
import pytest

from engine.memory import MemoryStore


def _embed_counter():
    calls = []

    def embed(texts):
        calls.append(list(texts))
        rng = [np.frombuffer(t.encode().ljust(8, b"_")[:8], dtype=np.uint8).astype(np.float32) for t in texts]
        v = np.stack(rng) + 1.0
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    return embed, calls


def _store():
    s = MemoryStore("Alice")
    a = s.add("Bob", "Bob adopted a cat named Tom.", 0, ["s0t0"])
    b = s.add("Alice", "I promised to visit Bob's cat.", 0, ["s0t1"])
    c = s.add("Carol", "Carol is moving to Paris.", 1, ["s1t0"])
    return s, a, b, c


def test_update_is_a_new_memory_linked_to_the_old_one():
    s, a, _, _ = _store()
    new = s.update(a.id, "Bob's cat Tom had kittens.", 2)
    assert s.get(a.id).text == "Bob adopted a cat named Tom."  # not overwritten
    assert new.about == "Bob" and new.session == 2
    g = s.graph()
    assert g.has_edge(new.id, a.id) and g.edges[new.id, a.id]["kind"] == "update"
    assert g.nodes[a.id] == {"about": "Bob", "session": 0, "text": "Bob adopted a cat named Tom.",
                             "owner": "Alice", "deleted": False}
    assert s.linked(a.id) == [new.id]


def test_links_only_go_from_newer_to_older():
    s, a, b, c = _store()
    s.link(c.id, a.id)
    with pytest.raises(ValueError, match="newer to older"):
        s.link(a.id, c.id)
    with pytest.raises(ValueError, match="itself"):
        s.link(a.id, a.id)
    s.link(b.id, a.id)  # same session is allowed
    with pytest.raises(ValueError, match="one-way"):
        s.link(a.id, b.id)
    with pytest.raises(KeyError):
        s.link("nope", a.id)


def test_edit_keeps_history_and_delete_is_a_recoverable_tombstone():
    s, a, b, _ = _store()
    s.link(b.id, a.id)
    s.edit(a.id, "Bob adopted a cat named Tommy.")
    hist = s.history(a.id)
    assert [h["action"] for h in hist] == ["created", "edit"]
    assert hist[0]["text"] == "Bob adopted a cat named Tom." and hist[1]["by"] == "user"
    s.delete(a.id)
    assert a.id not in s.graph() and not s.graph().has_edge(b.id, a.id)
    assert a.id in s.graph(include_deleted=True)
    assert s.linked(b.id) == []
    assert len(s) == 2
    s.restore(a.id)
    assert s.graph().has_edge(b.id, a.id)
    assert [h["action"] for h in s.history(a.id)] == ["created", "edit", "delete", "restore"]
    with pytest.raises(ValueError):
        s.add("Bob", "dup", 0, memory_id=a.id)


def test_embeddings_are_computed_once_and_top_k_uses_the_cache():
    s, a, b, c = _store()
    embed, calls = _embed_counter()
    assert s.ensure_embeddings(embed, "enc") == 3
    assert s.ensure_embeddings(embed, "enc") == 0
    assert len(calls) == 1
    d = s.add("Bob", "Bob likes jazz.", 2)
    assert s.ensure_embeddings(embed, "enc") == 1 and calls[-1] == ["Bob likes jazz."]
    q = embed(["Carol is moving to Paris."])[0]
    assert s.top_k(q, 1)[0][0] == c.id
    assert [m for m, _ in s.top_k(q, 10)][0] == c.id and len(s.top_k(q, 10)) == 4
    assert all(m != c.id for m, _ in s.top_k(q, 4, exclude=[c.id]))
    assert {m for m, _ in s.top_k(q, 4, about="Bob")} == {a.id, d.id}
    s.delete(c.id)
    assert c.id not in [m for m, _ in s.top_k(q, 4)]
    s.edit(a.id, "Bob adopted a dog.")  # edited text → re-encoded once
    assert s.ensure_embeddings(embed, "enc") == 1 and calls[-1] == ["Bob adopted a dog."]
    assert s.ensure_embeddings(embed, "other-encoder") == 4  # different encoder: cache rebuilt


def test_state_round_trips_through_json_with_vectors():
    s, a, b, c = _store()
    s.link(b.id, a.id)
    s.update(c.id, "Carol moved to Lyon instead.", 2)
    s.edit(b.id, "I promised to visit Tom.")
    s.delete(a.id)
    embed, calls = _embed_counter()
    s.ensure_embeddings(embed, "enc")
    state = json.loads(json.dumps(s.to_state()))
    t = MemoryStore.from_state(state)
    assert [m.text for m in t.memories(include_deleted=True)] == [m.text for m in s.memories(include_deleted=True)]
    assert t.is_deleted(a.id) and t.history(b.id) == s.history(b.id)
    assert sorted(map(tuple, [(l.src, l.dst, l.kind) for l in t.links(include_deleted=True)])) == \
        sorted((l.src, l.dst, l.kind) for l in s.links(include_deleted=True))
    assert t.ensure_embeddings(embed, "enc") == 0  # vectors came back with the state
    np.testing.assert_allclose(t.vector(c.id), s.vector(c.id))
    new = t.add("Bob", "fresh", 3)
    assert new.id not in {m.id for m in s.memories(include_deleted=True)}
    with pytest.raises(ValueError, match="format"):
        MemoryStore.from_state({"owner": "x"})
