"""Training EMMA's retrieval module: a dual encoder with triplet loss (EMMA paper §4.2, Appendix E.2).

§4.2: "It utilizes BERT-base ... employing separate encoders for both the conversation context and memory.
To train the module, we utilize triplet loss ... For memory retrieval, we measure cosine similarity,
sim(c, m_i) = cos(E_c(c), E_m(m_i))  (Eq. 1)."  App. E.2: lr 1e-4, batch 90, triplet margin 0.2, context max
512 tokens, memory max 32, at most 20 epochs with early stopping.

Training triples come from MiSC-shaped episodes (memory tags, §3.3):

* anchor — the conversation context the agent has when it uses the memory: the newest ``CONTEXT_TURNS``
  turns before a main-speaker utterance tagged with memories (for a tagged partner utterance, the context
  includes it, since the main speaker's next reply is where the memory is used), joined by newlines exactly
  as the EMMA agent builds its retrieval context;
* positive — a memory tagged on that utterance, in its stored form (with the provenance suffix);
* negative — another memory of the same episode (hard) or a memory of another episode; optionally every
  other positive in the batch as well (in-batch negatives).

Only memories formed in earlier sessions are candidates (memories are written at the end of a session).
Loss: ``mean(max(0, margin - cos(c, m+) + cos(c, m-)))``.  The result is ONE safetensors file whose keys start
with ``dialogue_encoder.`` and ``memory_encoder.`` — the layout of the published EMMA retriever — loadable
with :func:`engine.systems.emma.checkpoints.load_retriever_checkpoint`.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from engine.data.model import Episode
from engine.systems.emma import formats
from engine.systems.emma.checkpoints import CHECKPOINT_NAME, FORMAT

CONTEXT_TURNS = 4  # as engine.systems.emma.agent.CONTEXT_TURNS: the newest turns the context encoder sees
CONTEXT_MAX_LENGTH = 512  # App. E.2
MEMORY_MAX_LENGTH = 32  # App. E.2
MARGIN = 0.2  # App. E.2


@dataclass
class RetrievalQuery:
    """A context, the memories tagged on the utterance that followed it (positives), and the other
    memories of its episode that existed then (hard negatives / the candidate pool at evaluation)."""

    context: str
    positives: list[str]
    candidates: list[str]
    episode: str


def retrieval_queries(episodes: Sequence[Episode], context_turns: int = CONTEXT_TURNS) -> list[RetrievalQuery]:
    """One query per tagged utterance whose tagged memories existed at that point (see module doc)."""
    out = []
    for ep in episodes:
        by_id = {m.id: m for m in ep.memories}
        stored = {m.id: formats.with_provenance(m.text, m.about, m.session) for m in ep.memories}
        for session in ep.sessions:
            available = [m.id for m in ep.memories if m.session < session.index]
            for i, turn in enumerate(session.turns):
                tagged = [mid for mid in turn.memory_ids if by_id[mid].session < session.index]
                if not tagged or len(available) < 2:
                    continue
                upto = i if turn.speaker == ep.main.name else i + 1
                context = "\n".join(t.text for t in session.turns[max(0, upto - context_turns):upto])
                if not context.strip():
                    continue
                out.append(RetrievalQuery(context, [stored[m] for m in tagged],
                                          [stored[m] for m in available], ep.id))
    return out


@dataclass
class Triple:
    context: str
    positive: str
    negative: str | None = None  # fixed (validation) or sampled per batch (training)
    hard: list[str] = field(default_factory=list)
    episode: str = ""


def make_triples(queries: Sequence[RetrievalQuery], *, fixed_negatives: bool, hard_fraction: float = 0.5,
                 seed: int = 0) -> list[Triple]:
    """One triple per (query, positive).  ``fixed_negatives`` draws the negative now (validation, so the
    validation loss is comparable between epochs); otherwise it is drawn per batch by :class:`TripleCollator`."""
    rng = random.Random(seed)
    pool = sorted({c for q in queries for c in q.candidates})
    out = []
    for q in queries:
        hard = [c for c in q.candidates if c not in q.positives]
        for pos in q.positives:
            t = Triple(q.context, pos, None, hard, q.episode)
            if fixed_negatives:
                t.negative = _draw_negative(t, pool, rng, hard_fraction)
            out.append(t)
    return out


def _draw_negative(t: Triple, pool: Sequence[str], rng: random.Random, hard_fraction: float) -> str:
    if t.hard and (rng.random() < hard_fraction or len(pool) <= len(t.hard) + 1):
        return rng.choice(t.hard)
    for _ in range(20):
        c = rng.choice(pool)
        if c != t.positive and c not in t.hard:
            return c
    return rng.choice(t.hard) if t.hard else t.positive


class TripleCollator:
    """Tokenises (context, positive, negative) batches; draws training negatives (hard ones from the same
    episode with probability ``hard_fraction``, else from other episodes)."""

    def __init__(self, ctx_tok, mem_tok, pool: Sequence[str], *, context_max: int = CONTEXT_MAX_LENGTH,
                 memory_max: int = MEMORY_MAX_LENGTH, hard_fraction: float = 0.5, seed: int = 0):
        self.ctx_tok, self.mem_tok = ctx_tok, mem_tok
        self.pool = list(pool)
        self.context_max, self.memory_max = context_max, memory_max
        self.hard_fraction = hard_fraction
        self.rng = random.Random(seed)

    def __call__(self, batch: Sequence[Triple]) -> dict:
        negatives = [t.negative or _draw_negative(t, self.pool, self.rng, self.hard_fraction) for t in batch]
        c = self.ctx_tok([t.context for t in batch], padding=True, truncation=True, max_length=self.context_max,
                         return_tensors="pt")
        m = self.mem_tok([t.positive for t in batch] + negatives, padding=True, truncation=True,
                         max_length=self.memory_max, return_tensors="pt")
        import torch

        same = torch.tensor([[a.positive == b.positive for b in batch] for a in batch])
        return {"c_ids": c["input_ids"], "c_mask": c["attention_mask"], "m_ids": m["input_ids"],
                "m_mask": m["attention_mask"], "same_positive": same}


def _dual_encoder_class():
    import torch
    import torch.nn.functional as F

    from engine.backbones.encoding import pool

    class DualEncoder(torch.nn.Module):
        """E_c and E_m of Eq. (1): two encoders of the same architecture, pooled and L2-normalised."""

        def __init__(self, dialogue_encoder, memory_encoder, pooling: str, margin: float = MARGIN,
                     in_batch_negatives: bool = False):
            super().__init__()
            self.dialogue_encoder = dialogue_encoder
            self.memory_encoder = memory_encoder
            self.pooling, self.margin, self.in_batch_negatives = pooling, margin, in_batch_negatives

        def embed(self, encoder, ids, mask):
            out = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            return F.normalize(pool(out, mask, self.pooling).float(), p=2, dim=-1)

        def loss(self, batch: dict):
            """Triplet loss with cosine similarity (margin 0.2, App. E.2); with in-batch negatives every
            other positive of the batch is a further negative for each context."""
            c = self.embed(self.dialogue_encoder, batch["c_ids"], batch["c_mask"])
            m = self.embed(self.memory_encoder, batch["m_ids"], batch["m_mask"])
            n = c.shape[0]
            pos, neg = m[:n], m[n:]
            s_pos = (c * pos).sum(-1)
            losses = F.relu(self.margin - s_pos + (c * neg).sum(-1))
            if not self.in_batch_negatives or n < 2:
                return losses.mean()
            sims = c @ pos.T  # (n, n): context i vs positive j
            valid = ~batch["same_positive"]
            ib = F.relu(self.margin - s_pos.unsqueeze(1) + sims) * valid
            return (losses.sum() + ib.sum()) / (n + valid.sum())

    return DualEncoder


def dual_encoder(context_model, memory_model, pooling: str, *, margin: float = MARGIN, in_batch_negatives=False):
    return _dual_encoder_class()(context_model, memory_model, pooling, margin, in_batch_negatives)


# -- the checkpoint file ------------------------------------------------------------------------------

def save_retriever(model, path, *, base: str = "", pooling: str = "cls", context_max: int = CONTEXT_MAX_LENGTH,
                   memory_max: int = MEMORY_MAX_LENGTH) -> Path:
    """Write ONE safetensors file: ``dialogue_encoder.*`` + ``memory_encoder.*`` (the published layout),
    with metadata naming the base encoder, pooling and max lengths."""
    from safetensors.torch import save_file

    tensors = {}
    for prefix, enc in (("dialogue_encoder.", model.dialogue_encoder), ("memory_encoder.", model.memory_encoder)):
        for k, v in enc.state_dict().items():
            tensors[prefix + k] = v.detach().cpu().contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "base": str(base), "pooling": pooling,
                                           "context_max_length": str(context_max),
                                           "memory_max_length": str(memory_max)})
    tmp.replace(path)
    return path


class RetrieverIO:
    """The training loop's checkpoint I/O for a dual encoder: ``DIR/retriever.safetensors``."""

    def __init__(self, base: str, pooling: str, context_max: int, memory_max: int):
        self.meta = dict(base=base, pooling=pooling, context_max=context_max, memory_max=memory_max)

    def save(self, model, directory: Path) -> None:
        save_retriever(model, Path(directory) / CHECKPOINT_NAME, **self.meta)

    def load(self, model, directory: Path) -> None:
        from .checkpoints import load_into

        load_into(model.dialogue_encoder, model.memory_encoder, Path(directory) / CHECKPOINT_NAME)


# -- evaluation ----------------------------------------------------------------------------------------

def recall_at_k(ctx_encoder, mem_encoder, queries: Sequence[RetrievalQuery], ks=(1, 5), *,
                context_max: int = CONTEXT_MAX_LENGTH, memory_max: int = MEMORY_MAX_LENGTH) -> dict:
    """Share of queries with a tagged memory among the top-k of their episode's candidate memories, ranked
    by Eq. (1) cosine similarity (``LoadedEncoder`` pair, the inference encoding path)."""
    from engine.backbones.encoding import encode

    if not queries:
        return {f"recall@{k}": None for k in ks} | {"queries": 0}
    t0 = time.process_time()
    texts = sorted({c for q in queries for c in q.candidates})
    index = {t: i for i, t in enumerate(texts)}
    mem = encode(mem_encoder, texts, max_length=memory_max)
    ctx = encode(ctx_encoder, [q.context for q in queries], max_length=context_max)
    hits = {k: 0 for k in ks}
    for qi, q in enumerate(queries):
        cand = [index[c] for c in q.candidates]
        scores = mem[cand] @ ctx[qi]
        order = [q.candidates[i] for i in scores.argsort(descending=True).tolist()]
        for k in ks:
            hits[k] += any(p in order[:k] for p in q.positives)
    n = len(queries)
    return {f"recall@{k}": hits[k] / n for k in ks} | {
        "queries": n, "mean_candidates": sum(len(q.candidates) for q in queries) / n,
        "cpu_s": time.process_time() - t0}


# -- the trainer ---------------------------------------------------------------------------------------

@dataclass
class RetrieverTrainSettings:
    """``memlab train emma-retriever`` settings; ``encoder`` None = the embedded all-MiniLM-L6-v2."""

    encoder: str | None = None
    pooling: str | None = None  # None: the encoder's own (MiniLM: mean; BERT without config: mean)
    context_max: int = CONTEXT_MAX_LENGTH
    memory_max: int = MEMORY_MAX_LENGTH
    margin: float = MARGIN
    hard_fraction: float = 0.5
    in_batch_negatives: bool = False
    max_train_triples: int | None = None
    device: str | None = None
    seed: int = 0


@dataclass
class RetrieverReport:
    encoder: str
    checkpoint: str
    n_train: int
    n_valid_queries: int
    before: dict
    after: dict
    result: dict
    reasons: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _as_loaded(encoder, model, name):
    from engine.backbones.types import LoadedEncoder

    return LoadedEncoder(model=model, tokenizer=encoder.tokenizer, name=name, pooling=encoder.pooling,
                         plan=encoder.plan)


def train_retriever(train_episodes: Sequence[Episode], valid_episodes: Sequence[Episode], out_dir, *,
                    settings: RetrieverTrainSettings | None = None, loop_config=None,
                    progress: Callable | None = None, cancel: threading.Event | None = None,
                    resume: bool = False, encoder=None) -> RetrieverReport:
    """Train the dual encoder from one base encoder (both towers start as copies of it, as in EMMA where
    both are BERT-base); writes ``out_dir/retriever.safetensors``.  Returns recall@1/@5 on the held-out
    episodes before and after training."""
    from engine.backbones.loading import load_encoder

    from engine.training.loop import TrainConfig, train

    settings = settings or RetrieverTrainSettings()
    loop_config = loop_config or TrainConfig(lr=1e-4, batch_size=90, epochs=20, patience=2)
    if encoder is None:
        name = settings.encoder or _default_encoder()
        encoder = load_encoder(name, pooling=settings.pooling, device=settings.device)
    reasons = list(encoder.plan.reasons)
    train_q = retrieval_queries(train_episodes)
    valid_q = retrieval_queries(valid_episodes)
    if not train_q:
        raise ValueError("the training episodes have no utterances tagged with memories from earlier sessions")
    triples = make_triples(train_q, fixed_negatives=False, seed=settings.seed)
    if settings.max_train_triples and len(triples) > settings.max_train_triples:
        triples = random.Random(settings.seed).sample(triples, settings.max_train_triples)
    valid_triples = make_triples(valid_q, fixed_negatives=True, hard_fraction=settings.hard_fraction,
                                 seed=settings.seed + 1)
    reasons.append(f"{len(triples)} training triples from {len(train_q)} tagged utterances; "
                   f"{len(valid_q)} held-out queries; negatives: {settings.hard_fraction:.0%} same-episode (hard), "
                   f"rest other episodes" + ("; plus in-batch negatives" if settings.in_batch_negatives else ""))

    ctx_model = encoder.model
    mem_model = copy.deepcopy(encoder.model)
    model = dual_encoder(ctx_model, mem_model, encoder.pooling, margin=settings.margin,
                         in_batch_negatives=settings.in_batch_negatives)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    ctx_enc, mem_enc = _as_loaded(encoder, ctx_model, encoder.name), _as_loaded(encoder, mem_model, encoder.name)

    recall = lambda: recall_at_k(ctx_enc, mem_enc, valid_q, context_max=settings.context_max,  # noqa: E731
                                 memory_max=settings.memory_max)
    before = recall()
    pool = sorted({c for q in train_q for c in q.candidates})
    collator = TripleCollator(encoder.tokenizer, encoder.tokenizer, pool, context_max=settings.context_max,
                              memory_max=settings.memory_max, hard_fraction=settings.hard_fraction,
                              seed=settings.seed)
    io = RetrieverIO(encoder.name, encoder.pooling, settings.context_max, settings.memory_max)
    result = train(model, triples, valid_triples, collate=collator, loss_fn=lambda m, b: m.loss(b), io=io,
                   out_dir=out_dir, config=loop_config, progress=progress, cancel=cancel, resume=resume,
                   reasons=reasons)
    model.eval()
    after = recall()
    return RetrieverReport(encoder=encoder.name, checkpoint=str(Path(out_dir) / CHECKPOINT_NAME),
                           n_train=len(triples), n_valid_queries=len(valid_q), before=before, after=after,
                           result=asdict(result), reasons=result.reasons)


def _default_encoder() -> str:
    from engine.backbones.embedded import default_encoder_path

    return str(default_encoder_path())
