"""The persona-consistency classifier behind Con.S and Coh-Con.S (MDR §5, after Tang et al. 2023, CLV).

The embedded all-MiniLM-L6-v2 (frozen; mean pooling, unit vectors) embeds each text once; two small heads
score a pair of sentence vectors ``(u, v)`` from the features ``[u, v, |u - v|, u * v]`` (the pair
classifier of Conneau et al. 2017 / Reimers & Gurevych 2019, "SBERT", §3) with an MLP:

* **consistency** — ``P(the hypothesis is expressed by / supported by the premise lines)``: each premise
  line is scored against the hypothesis and the pair's logit is the *maximum over lines* (a hypothesis is
  supported when one line supports it). Premise = persona lines (Con.S) or, for a grounding check, a
  speaker's turns; hypothesis = a response or a memory.
* **coherence** — ``P(the response answers the query)``: one ``(query, response)`` pair.

CLV trains one 3-way classifier (coherent-and-consistent / consistent-only / neither) and reports the
share of responses in the consistent classes (Con.Score) and in the coherent-and-consistent class
(Coh-Con.Score); here the two decisions are two heads (see :mod:`engine.metrics.consistency`). The encoder
stays frozen so that the whole training set fits a CPU budget (sentence vectors are computed once).
Trained by ``memlab train consistency`` (:mod:`engine.training.consistency`); the shipped classifier is
``assets/consistency/minilm-consistency`` (``heads.safetensors`` + ``classifier.json`` with its held-out
accuracy), loaded by :meth:`ConsistencyClassifier.load_default`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "assets" / "consistency" / "minilm-consistency"
HEADS_FILE = "heads.safetensors"
META_FILE = "classifier.json"
TASKS = ("consistency", "coherence")
EMBEDDED_ENCODER = "embedded:all-MiniLM-L6-v2"
_DEFAULT: dict = {}


class ClassifierMissingError(FileNotFoundError):
    """The consistency classifier is not where it was looked for."""


def clean_lines(lines) -> list[str]:
    if isinstance(lines, str):
        lines = [lines]
    return [" ".join(str(x).split()) for x in lines if str(x).strip()]


def build_heads(dim: int, hidden: int = 256, dropout: float = 0.1):
    """One MLP per task over ``[u, v, |u - v|, u * v]`` of two ``dim``-dimensional sentence vectors."""
    import torch

    def head():
        return torch.nn.Sequential(torch.nn.Linear(4 * dim, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout),
                                   torch.nn.Linear(hidden, 1))

    return torch.nn.ModuleDict({t: head() for t in TASKS})


def pair_logits(head, u, v):
    import torch

    return head(torch.cat([u, v, (u - v).abs(), u * v], dim=-1)).squeeze(-1)


def max_over_lines(logits, owner, n: int):
    """Per pair, the largest logit among its lines (``owner[i]`` = the pair of line ``i``)."""
    import torch

    out = torch.full((n,), float("-inf"), dtype=logits.dtype, device=logits.device)
    return out.scatter_reduce(0, owner, logits, reduce="amax", include_self=True)


def resolve_encoder_path(name: str) -> str:
    if name == EMBEDDED_ENCODER:
        from engine.backbones.embedded import default_encoder_path

        return str(default_encoder_path())
    return name


class ConsistencyClassifier:
    """Batched probabilities from a trained classifier; the encoder is loaded through the device policy.

    >>> clf = ConsistencyClassifier.load_default()
    >>> clf.prob(["i have two dogs.", "i work as a nurse."], "my dogs keep me busy after my hospital shifts")
    """

    def __init__(self, encoder, heads, meta: dict, source: str):
        self.encoder, self.heads, self.meta, self.source = encoder, heads, meta, source
        self.max_length = int(meta.get("max_length", 128))
        self.threshold = float(meta.get("threshold", 0.5))

    @classmethod
    def load(cls, directory, *, device: str | None = None, encoder=None) -> "ConsistencyClassifier":
        """Load from ``directory``; ``encoder`` (a LoadedEncoder) reuses one already loaded."""
        from safetensors.torch import load_file

        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file() or not (directory / HEADS_FILE).is_file():
            raise ClassifierMissingError(
                f"no consistency classifier in {directory} (needs {META_FILE} and {HEADS_FILE}); "
                "train one with `memlab train consistency --out DIR`")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if encoder is None:
            from engine.backbones.loading import load_encoder

            encoder = load_encoder(resolve_encoder_path(meta.get("base_encoder", EMBEDDED_ENCODER)),
                                   pooling=meta.get("pooling", "mean"), device=device)
        heads = build_heads(int(meta["dim"]), int(meta.get("hidden", 256)))
        heads.load_state_dict(load_file(str(directory / HEADS_FILE)))
        heads.to(next(encoder.model.parameters()).device).eval()
        return cls(encoder, heads, meta, str(directory))

    @classmethod
    def load_default(cls, *, device: str | None = None, encoder=None) -> "ConsistencyClassifier":
        """The classifier shipped in ``assets/consistency/minilm-consistency`` (a clear error if missing);
        loaded once per process and device (pass ``encoder`` to reuse an already loaded MiniLM instead)."""
        if not (SHIPPED_DIR / META_FILE).is_file():
            raise ClassifierMissingError(
                f"the shipped consistency classifier is missing from {SHIPPED_DIR}; reinstall MemLab or train one "
                "with `memlab train consistency --out DIR` and pass it with --classifier DIR")
        if encoder is not None:
            return cls.load(SHIPPED_DIR, device=device, encoder=encoder)
        if device not in _DEFAULT:
            _DEFAULT[device] = cls.load(SHIPPED_DIR, device=device)
        return _DEFAULT[device]

    def describe(self) -> dict:
        return {"source": self.source, "base_encoder": self.meta.get("base_encoder"),
                "threshold": self.threshold, "held_out": self.meta.get("held_out")}

    def embed(self, texts: Sequence[str]):
        """Unit sentence vectors of distinct ``texts`` → ``{text: row}`` and the matrix."""
        from engine.backbones.encoding import encode

        uniq = list(dict.fromkeys(texts))
        vecs = encode(self.encoder, uniq, batch_size=64, max_length=self.max_length) if uniq else None
        return {t: i for i, t in enumerate(uniq)}, vecs

    def _consistency(self, premises: list[list[str]], hyps: list[str]) -> list[float]:
        import torch

        lines = [clean_lines(p) for p in premises]
        index, vecs = self.embed([x for ls in lines for x in ls] + list(hyps))
        device = next(self.heads.parameters()).device
        vecs = vecs.to(device)
        owner = [i for i, ls in enumerate(lines) for _ in ls]
        if not owner:
            return [0.0] * len(hyps)
        u = vecs[[index[x] for ls in lines for x in ls]]
        v = vecs[[index[hyps[i]] for i in owner]]
        with torch.inference_mode():
            logits = max_over_lines(pair_logits(self.heads["consistency"], u, v),
                                    torch.tensor(owner, device=device), len(hyps))
        return [float(p) for p in torch.sigmoid(logits).cpu()]  # no lines: sigmoid(-inf) = 0

    def prob(self, premise_lines, hypothesis):
        """``P(consistent)`` of ``hypothesis`` given ``premise_lines``.

        One pair: ``prob(["line", ...], "text") -> float``. Batched: ``prob([[lines], ...], ["text", ...])
        -> list[float]`` (one premise list per hypothesis).
        """
        if isinstance(hypothesis, str):
            return self._consistency([list(clean_lines(premise_lines))], [hypothesis])[0]
        hyps = list(hypothesis)
        if len(premise_lines) != len(hyps):
            raise ValueError(f"{len(premise_lines)} premise lists but {len(hyps)} hypotheses")
        return self._consistency([list(p) for p in premise_lines], hyps)

    def coherence(self, queries, responses):
        """``P(the response answers the query)``; one pair (two strings) or two equal-length lists."""
        import torch

        single = isinstance(responses, str)
        q, r = ([str(queries)], [responses]) if single else (list(queries), list(responses))
        if len(q) != len(r):
            raise ValueError(f"{len(q)} queries but {len(r)} responses")
        index, vecs = self.embed(q + r)
        if vecs is None:
            return []
        vecs = vecs.to(next(self.heads.parameters()).device)
        with torch.inference_mode():
            logits = pair_logits(self.heads["coherence"], vecs[[index[x] for x in q]], vecs[[index[x] for x in r]])
        out = [float(p) for p in torch.sigmoid(logits).cpu()]
        return out[0] if single else out
