"""EMMA's retrieval module (paper §4.2, Appendix E.2).

Two encoders — one for the conversation context (max 512 tokens) and one for memories (max 32
tokens) — compared by cosine similarity, Eq. (1): ``sim(c, m_i) = cos(E_c(c), E_m(m_i))``. The top-1
memory is returned together with the memories linked to it ("we not only provide the retrieved
memories but also include associated memories linked to those memories").

Memory vectors are computed once per memory text and cached in the :class:`MemoryStore`'s matrix,
so a turn costs one context encoding and one matrix–vector product, whatever the number of
memories. The two encoders may be the same :class:`LoadedEncoder` object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.backbones.types import LoadedEncoder
from engine.memory import MemoryStore

CONTEXT_MAX_LENGTH = 512  # Appendix E.2
MEMORY_MAX_LENGTH = 32  # Appendix E.2


def encode_texts(encoder: LoadedEncoder, texts: list[str], max_length: int, batch_size: int = 32) -> np.ndarray:
    """L2-normalised sentence vectors as a float32 numpy matrix (via ``engine.backbones.loading.encode``)."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    from engine.backbones.loading import encode  # lazy: torch loads with the model code

    vecs = encode(encoder, texts, batch_size=batch_size, max_length=max_length)
    return vecs.detach().float().cpu().numpy()


@dataclass
class Retrieved:
    """One retrieval: the top-1 memory id, its score, and the ids linked to it (newest first)."""

    top_id: str
    score: float
    linked_ids: list[str]

    @property
    def ids(self) -> list[str]:
        return [self.top_id, *self.linked_ids]


class Retriever:
    """Context encoder + memory encoder over a :class:`MemoryStore` (§4.2)."""

    def __init__(self, context_encoder: LoadedEncoder, memory_encoder: LoadedEncoder | None = None,
                 *, context_max_length: int = CONTEXT_MAX_LENGTH,
                 memory_max_length: int = MEMORY_MAX_LENGTH, max_linked: int = 4):
        self.context_encoder = context_encoder
        self.memory_encoder = memory_encoder or context_encoder
        self.context_max_length = context_max_length
        self.memory_max_length = memory_max_length
        self.max_linked = max_linked
        self.note = ""  # which retriever this is and why (shown by the agent's describe())

    @property
    def memory_model_name(self) -> str:
        return f"{self.memory_encoder.name}@{self.memory_max_length}"

    def embed_memories(self, texts: list[str]) -> np.ndarray:
        return encode_texts(self.memory_encoder, texts, self.memory_max_length)

    def embed_context(self, context: str) -> np.ndarray:
        return encode_texts(self.context_encoder, [context], self.context_max_length)[0]

    def refresh(self, store: MemoryStore) -> int:
        """Encode memories that have no cached vector yet (one batch); returns how many."""
        return store.ensure_embeddings(self.embed_memories, self.memory_model_name)

    def retrieve(self, store: MemoryStore, context: str) -> Retrieved | None:
        """Top-1 memory by cosine similarity to ``context`` plus its linked memories."""
        self.refresh(store)
        if len(store) == 0:
            return None
        hits = store.top_k(self.embed_context(context), 1)
        if not hits:
            return None
        top, score = hits[0]
        return Retrieved(top, score, store.linked(top)[: self.max_linked])


def load_retriever_checkpoint(path, base_encoder: str | None = None, *, pooling: str | None = None,
                              device: str | None = None) -> Retriever:
    """A :class:`Retriever` from the published EMMA checkpoint format: one safetensors file whose keys start
    with ``dialogue_encoder.`` (context encoder) and ``memory_encoder.`` (memory encoder), each a BERT-family
    encoder of ``base_encoder``'s architecture (Appendix E.2: BERT-base, [CLS] vectors). Shapes are validated
    by :func:`engine.systems.emma.checkpoints.load_retriever_checkpoint`, which this wraps."""
    from engine.systems.emma.checkpoints import load_retriever_checkpoint as load_towers

    context_encoder, memory_encoder = load_towers(path, base_encoder, pooling=pooling, device=device)
    return Retriever(context_encoder, memory_encoder)
