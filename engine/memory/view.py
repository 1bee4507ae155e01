"""One memory snapshot function (docs/architecture.md, "The agent contract": ``memory_view``): a
:class:`MemoryStore` as plain data for the terminal chat, the desktop worker and self-play.

Live memories (deleted ones are left out, as the memory page expects), each with its source turns and version history
(``created``/``edit``/``delete``/``restore`` entries), and the links (newer → older, ``kind``).
"""

from __future__ import annotations

from .store import MemoryStore


def memory_brief(store: MemoryStore, memory_id: str) -> dict:
    """``{"kind": "memory", "id", "about", "session", "text"}`` for one memory (a ``TurnRecord.given`` item)."""
    if memory_id not in store:
        return {"kind": "memory", "id": memory_id, "about": "", "session": -1, "text": ""}
    m = store.get(memory_id)
    return {"kind": "memory", "id": m.id, "about": m.about, "session": m.session, "text": m.text}


def store_view(store: MemoryStore | None, owner: str = "") -> dict:
    out = {"owner": owner or (store.owner if store is not None else ""), "memories": [], "links": []}
    if store is None:
        return out
    for m in store.memories():
        versions = [{k: v for k, v in h.items() if isinstance(v, (str, int, float, bool, type(None)))}
                    for h in store.history(m.id)]
        out["memories"].append({"id": m.id, "about": m.about, "session": int(m.session), "text": m.text,
                                "source_turns": [str(t) for t in m.source_turns], "versions": versions,
                                "deleted": store.is_deleted(m.id)})
    out["links"] = [{"src": l.src, "dst": l.dst, "kind": l.kind} for l in store.links()]
    return out
