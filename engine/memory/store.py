"""Egocentric memory (EMMA paper §3.3): the main speaker's memories about itself and each partner.

* Every memory is owned by the main speaker, is *about* one speaker, and records the session it was
  formed in and the turns it summarises (§3.3 "Memory Generation").
* Links form a directed graph from a newer memory to an older one (§3.3 "Memory Connection",
  §4.1 "Memory Linker"): nothing is ever deleted or overwritten. A changed fact is a *new* memory
  linked to the old one with kind ``update`` (:meth:`MemoryStore.update`).
* A user may correct a memory (:meth:`MemoryStore.edit`) or remove it
  (:meth:`MemoryStore.delete`): both are entries in the memory's version history; a deletion is a
  tombstone (hidden from retrieval and from :meth:`graph`, recoverable with
  :meth:`MemoryStore.restore`).
* Each memory's embedding is computed once (for its current text) and cached in one numpy matrix,
  so retrieval is one matrix–vector product (§4.2, Eq. 1 with L2-normalised vectors) rather than a
  re-encoding of every memory per turn.

Torch-free (docs/architecture.md import rules): the caller passes an ``embed`` function (texts → L2-normalised
``numpy`` rows) from the model code.
"""

from __future__ import annotations

import base64
import time
from dataclasses import asdict
from typing import Callable, Iterable

import networkx as nx
import numpy as np

from engine.data.model import LINK_KINDS, Link, Memory

STATE_FORMAT = "memlab-memory/1"

EmbedFn = Callable[[list[str]], np.ndarray]


class MemoryError_(KeyError):
    """An unknown memory id or an invalid link."""


def _now() -> float:
    return round(time.time(), 3)


class MemoryStore:
    """The egocentric memory of one main speaker (``owner``)."""

    def __init__(self, owner: str):
        self.owner = owner
        self._memories: dict[str, Memory] = {}
        self._history: dict[str, list[dict]] = {}
        self._deleted: set[str] = set()
        self._graph = nx.DiGraph()
        self._next = 0
        # embedding cache: row i of _matrix is the vector of _rows[i]
        self.embedding_model: str | None = None
        self._rows: list[str] = []
        self._row_of: dict[str, int] = {}
        self._matrix: np.ndarray | None = None
        self._stale: set[str] = set()

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._memories) - len(self._deleted)

    def __contains__(self, memory_id: str) -> bool:
        return memory_id in self._memories

    def get(self, memory_id: str) -> Memory:
        try:
            return self._memories[memory_id]
        except KeyError:
            raise MemoryError_(f"no memory with id {memory_id!r}") from None

    def is_deleted(self, memory_id: str) -> bool:
        return memory_id in self._deleted

    def memories(self, *, about: str | None = None, include_deleted: bool = False) -> list[Memory]:
        """Memories in creation order (optionally only those about one speaker)."""
        return [
            m for m in self._memories.values()
            if (include_deleted or m.id not in self._deleted) and (about is None or m.about == about)
        ]

    def links(self, *, include_deleted: bool = False) -> list[Link]:
        return [
            Link(u, v, d["kind"]) for u, v, d in self._graph.edges(data=True)
            if include_deleted or (u not in self._deleted and v not in self._deleted)
        ]

    def history(self, memory_id: str) -> list[dict]:
        """Version history: ``{"action": created|edit|delete|restore, "text", "by", "at"}``."""
        self.get(memory_id)
        return [dict(h) for h in self._history[memory_id]]

    def linked(self, memory_id: str) -> list[str]:
        """Memories linked to ``memory_id`` in either direction (§4.2 "associated memories"),
        newest first, tombstones excluded."""
        self.get(memory_id)
        ids = set(self._graph.successors(memory_id)) | set(self._graph.predecessors(memory_id))
        ids -= self._deleted
        order = {mid: i for i, mid in enumerate(self._memories)}
        return sorted(ids, key=lambda i: (-self._memories[i].session, -order[i]))

    def graph(self, *, include_deleted: bool = False) -> nx.DiGraph:
        """A copy of the link graph: nodes = memory ids with attributes ``about``, ``session``,
        ``text`` (and ``owner``, ``deleted``); edges newer → older with attribute ``kind``."""
        g = nx.DiGraph()
        for m in self.memories(include_deleted=include_deleted):
            g.add_node(m.id, about=m.about, session=m.session, text=m.text, owner=m.owner,
                       deleted=m.id in self._deleted)
        for link in self.links(include_deleted=include_deleted):
            g.add_edge(link.src, link.dst, kind=link.kind)
        return g

    # ------------------------------------------------------------------ writing
    def add(self, about: str, text: str, session: int, source_turns: Iterable[str] = (),
            *, memory_id: str | None = None, by: str = "agent") -> Memory:
        """Store a new memory about ``about`` formed in ``session`` (0-based)."""
        text = text.strip()
        if not text:
            raise ValueError("a memory needs text")
        if session < 0:
            raise ValueError(f"session must be >= 0, got {session}")
        if memory_id is None:
            while f"m{self._next}" in self._memories:
                self._next += 1
            memory_id = f"m{self._next}"
            self._next += 1
        elif memory_id in self._memories:
            raise ValueError(f"memory id {memory_id!r} already exists (memories are never overwritten)")
        m = Memory(memory_id, self.owner, about, text, session, list(source_turns))
        self._memories[memory_id] = m
        self._history[memory_id] = [{"action": "created", "text": text, "by": by, "at": _now()}]
        self._graph.add_node(memory_id)
        self._stale.add(memory_id)
        return m

    def link(self, src: str, dst: str, kind: str = "related") -> Link:
        """Link a newer memory ``src`` to an older (or same-session) memory ``dst``."""
        a, b = self.get(src), self.get(dst)
        if src == dst:
            raise ValueError(f"cannot link memory {src!r} to itself")
        if kind not in LINK_KINDS:
            raise ValueError(f"link kind must be one of {LINK_KINDS}, got {kind!r}")
        if a.session < b.session:
            raise ValueError(
                f"links go from newer to older memories: {src!r} (session {a.session}) is older "
                f"than {dst!r} (session {b.session})")
        if self._graph.has_edge(dst, src):
            raise ValueError(f"{dst!r} already links to {src!r}; links are one-way newer → older")
        if self._graph.has_edge(src, dst) and kind == "related":
            kind = self._graph.edges[src, dst]["kind"]  # never downgrade an update link
        self._graph.add_edge(src, dst, kind=kind)
        return Link(src, dst, kind)

    def update(self, old_id: str, new_text: str, session: int,
               source_turns: Iterable[str] = (), *, by: str = "agent") -> Memory:
        """A changed fact: a new memory (same ``about``) linked to the old one with kind ``update``;
        the old memory stays as it was."""
        old = self.get(old_id)
        m = self.add(old.about, new_text, session, source_turns, by=by)
        self.link(m.id, old_id, "update")
        return m

    def edit(self, memory_id: str, new_text: str, *, by: str = "user") -> Memory:
        """A user correction: the text changes, the previous text stays in :meth:`history`."""
        m = self.get(memory_id)
        new_text = new_text.strip()
        if not new_text:
            raise ValueError("an edited memory needs text (use delete() to remove it)")
        if new_text != m.text:
            m.text = new_text
            self._history[memory_id].append({"action": "edit", "text": new_text, "by": by, "at": _now()})
            self._stale.add(memory_id)
        return m

    def delete(self, memory_id: str, *, by: str = "user") -> None:
        """Tombstone: hidden from retrieval and the graph, kept with its history and links."""
        m = self.get(memory_id)
        if memory_id not in self._deleted:
            self._deleted.add(memory_id)
            self._history[memory_id].append({"action": "delete", "text": m.text, "by": by, "at": _now()})

    def restore(self, memory_id: str, *, by: str = "user") -> None:
        m = self.get(memory_id)
        if memory_id in self._deleted:
            self._deleted.discard(memory_id)
            self._history[memory_id].append({"action": "restore", "text": m.text, "by": by, "at": _now()})

    # ------------------------------------------------------------------ embeddings
    def pending_embeddings(self) -> list[str]:
        """Ids whose current text has no cached vector yet."""
        return [mid for mid in self._memories if mid in self._stale]

    def ensure_embeddings(self, embed: EmbedFn, model_name: str | None = None) -> int:
        """Compute (in one batch) the vectors of memories that have none for their current text.

        A different ``model_name`` than the cached one invalidates the whole cache. Returns how
        many memories were encoded — 0 on a turn where nothing new was stored.
        """
        if model_name is not None and model_name != self.embedding_model:
            if self.embedding_model is not None or self._matrix is not None:
                self._stale = set(self._memories)
                self._rows, self._row_of, self._matrix = [], {}, None
            self.embedding_model = model_name
        todo = self.pending_embeddings()
        if not todo:
            return 0
        vecs = np.asarray(embed([self._memories[i].text for i in todo]), dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != len(todo):
            raise ValueError(f"embed() returned shape {vecs.shape} for {len(todo)} texts")
        if self._matrix is not None and vecs.shape[1] != self._matrix.shape[1]:
            raise ValueError(f"embedding size {vecs.shape[1]} differs from the cache's {self._matrix.shape[1]}")
        new_rows = []
        for mid, v in zip(todo, vecs):
            if mid in self._row_of:
                self._matrix[self._row_of[mid]] = v
            else:
                new_rows.append((mid, v))
        if new_rows:
            block = np.stack([v for _, v in new_rows])
            self._matrix = block if self._matrix is None else np.concatenate([self._matrix, block])
            for mid, _ in new_rows:
                self._row_of[mid] = len(self._rows)
                self._rows.append(mid)
        self._stale.difference_update(todo)
        return len(todo)

    def vector(self, memory_id: str) -> np.ndarray:
        if memory_id in self._stale or memory_id not in self._row_of:
            raise MemoryError_(f"memory {memory_id!r} has no cached embedding; call ensure_embeddings()")
        return self._matrix[self._row_of[memory_id]]

    def top_k(self, query: np.ndarray, k: int = 1, *, about: str | None = None,
              exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The ``k`` memories with the highest cosine similarity to ``query`` (§4.2 Eq. 1).

        Vectors are L2-normalised, so cosine = dot product over the cached matrix. Tombstoned
        memories, memories without a current vector, and ``exclude`` are skipped.
        """
        if self._matrix is None or k <= 0:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        scores = self._matrix @ q
        skip = self._deleted | self._stale | set(exclude)
        if skip or about is not None:
            mask = np.array([
                (mid not in skip) and (about is None or self._memories[mid].about == about)
                for mid in self._rows
            ])
            scores = np.where(mask, scores, -np.inf)
        k = min(k, int(np.isfinite(scores).sum()))
        if k == 0:
            return []
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx])]
        return [(self._rows[i], float(scores[i])) for i in idx]

    # ------------------------------------------------------------------ state
    def to_state(self, *, include_embeddings: bool = True) -> dict:
        """JSON-serialisable state (memories, history, tombstones, links, cached vectors)."""
        state = {
            "format": STATE_FORMAT,
            "owner": self.owner,
            "next": self._next,
            "memories": [asdict(m) for m in self._memories.values()],
            "history": self._history,
            "deleted": sorted(self._deleted),
            "links": [asdict(l) for l in self.links(include_deleted=True)],
        }
        if include_embeddings and self._matrix is not None:
            fresh = [mid for mid in self._rows if mid not in self._stale]
            mat = np.stack([self._matrix[self._row_of[mid]] for mid in fresh]) if fresh else None
            if mat is not None:
                state["embeddings"] = {
                    "model": self.embedding_model,
                    "ids": fresh,
                    "dim": int(mat.shape[1]),
                    "float32_b64": base64.b64encode(mat.astype("<f4").tobytes()).decode("ascii"),
                }
        return state

    @classmethod
    def from_state(cls, state: dict) -> "MemoryStore":
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a {STATE_FORMAT} memory state (field 'format')")
        store = cls(state["owner"])
        for i, d in enumerate(state.get("memories", [])):
            try:
                m = Memory(d["id"], d["owner"], d["about"], d["text"], int(d["session"]),
                           list(d.get("source_turns", [])))
            except KeyError as e:
                raise ValueError(f"memory state: memories[{i}] lacks field {e.args[0]!r}") from None
            store._memories[m.id] = m
            store._graph.add_node(m.id)
            store._history[m.id] = [dict(h) for h in state.get("history", {}).get(m.id, [])] or [
                {"action": "created", "text": m.text, "by": "agent", "at": _now()}]
            store._stale.add(m.id)
        store._deleted = set(state.get("deleted", [])) & set(store._memories)
        for i, d in enumerate(state.get("links", [])):
            if d["src"] not in store._memories or d["dst"] not in store._memories:
                raise ValueError(f"memory state: links[{i}] names an unknown memory")
            store._graph.add_edge(d["src"], d["dst"], kind=d.get("kind", "related"))
        store._next = int(state.get("next", len(store._memories)))
        emb = state.get("embeddings")
        if emb:
            mat = np.frombuffer(base64.b64decode(emb["float32_b64"]), dtype="<f4").reshape(-1, emb["dim"])
            ids = [mid for mid in emb["ids"] if mid in store._memories]
            store.embedding_model = emb.get("model")
            store._rows = list(ids)
            store._row_of = {mid: i for i, mid in enumerate(ids)}
            store._matrix = np.array(mat[[emb["ids"].index(mid) for mid in ids]], dtype=np.float32)
            store._stale -= set(ids)
        return store
