"""The persona-consistency classifier behind Con.S and Coh-Con.S (MDR §5, after Tang et al. 2023, CLV).

A cross-encoder over the embedded all-MiniLM-L6-v2 with one shared LoRA adapter and two logistic heads on
the mean-pooled output:

* **consistency** — ``P(the hypothesis is expressed by / supported by the premise lines)``; premise =
  persona lines (Con.S) or, for a grounding check, a speaker's turns; hypothesis = a response or a memory.
  Input: ``[CLS] line1 line2 ... [SEP] hypothesis [SEP]``.
* **coherence** — ``P(the response answers the query)``; input ``[CLS] query [SEP] response [SEP]``.

CLV trains one 3-way classifier (coherent-and-consistent / consistent-only / neither) and reports the
share of responses in the consistent classes (Con.Score) and in the coherent-and-consistent class
(Coh-Con.Score); here the two decisions are two heads of one model (see :mod:`engine.metrics.consistency`).
Trained by ``memlab train consistency`` (:mod:`engine.training.consistency`); the shipped one lives in
``assets/consistency/minilm-consistency`` and is what :meth:`ConsistencyClassifier.load_default` loads.

Files of a classifier directory: ``adapter_config.json`` + ``adapter_model.safetensors`` (peft LoRA over the
encoder), ``heads.safetensors`` (``consistency.weight/bias``, ``coherence.weight/bias``), ``classifier.json``
(base encoder, max length, threshold, held-out figures).
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


class ClassifierMissingError(FileNotFoundError):
    """The consistency classifier is not where it was looked for."""


def premise_text(lines: Sequence[str]) -> str:
    """Premise lines joined into one segment (each line ends with a sentence mark so they stay apart)."""
    if isinstance(lines, str):
        lines = [lines]
    parts = []
    for line in lines:
        line = " ".join(str(line).split())
        if line:
            parts.append(line if line[-1] in ".!?" else line + ".")
    return " ".join(parts)


def build_heads(hidden: int):
    import torch

    return torch.nn.ModuleDict({t: torch.nn.Linear(hidden, 1) for t in TASKS})


def pooled(encoder, batch):
    """Mean of the last hidden states over real tokens (MiniLM's own sentence pooling)."""
    states = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def resolve_encoder_path(name: str) -> str:
    if name == EMBEDDED_ENCODER:
        from engine.backbones.embedded import default_encoder_path

        return str(default_encoder_path())
    return name


class ConsistencyClassifier:
    """Batched probabilities from a trained classifier (CPU or the device policy's choice).

    >>> clf = ConsistencyClassifier.load_default()
    >>> clf.prob(["i have two dogs.", "i work as a nurse."], "my dogs keep me busy after my hospital shifts")
    0.9...
    """

    def __init__(self, tokenizer, encoder, heads, meta: dict, source: str):
        self.tokenizer, self.encoder, self.heads, self.meta, self.source = tokenizer, encoder, heads, meta, source
        self.max_length = int(meta.get("max_length", 160))
        self.threshold = float(meta.get("threshold", 0.5))

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, directory, *, device: str | None = None) -> "ConsistencyClassifier":
        import torch
        from peft import PeftModel
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file() or not (directory / HEADS_FILE).is_file():
            raise ClassifierMissingError(
                f"no consistency classifier in {directory} (needs {META_FILE}, {HEADS_FILE} and the LoRA adapter); "
                "train one with `memlab train consistency --out DIR`")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        base = resolve_encoder_path(meta.get("base_encoder", EMBEDDED_ENCODER))
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        encoder = AutoModel.from_pretrained(base, local_files_only=True)
        encoder = PeftModel.from_pretrained(encoder, str(directory), is_trainable=False)
        heads = build_heads(encoder.config.hidden_size)
        heads.load_state_dict(load_file(str(directory / HEADS_FILE)))
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        encoder.to(dev).eval()
        heads.to(dev).eval()
        return cls(tokenizer, encoder, heads, meta, str(directory))

    @classmethod
    def load_default(cls, *, device: str | None = None) -> "ConsistencyClassifier":
        """The classifier shipped in ``assets/consistency/minilm-consistency`` (a clear error if missing)."""
        if not (SHIPPED_DIR / META_FILE).is_file():
            raise ClassifierMissingError(
                f"the shipped consistency classifier is missing from {SHIPPED_DIR}; reinstall MemLab or train one "
                "with `memlab train consistency --out DIR` and pass it with --classifier DIR")
        return cls.load(SHIPPED_DIR, device=device)

    def describe(self) -> dict:
        return {"source": self.source, "base_encoder": self.meta.get("base_encoder"),
                "threshold": self.threshold, "held_out": self.meta.get("held_out")}

    # -- scoring -------------------------------------------------------------------------------
    def _probs(self, task: str, firsts: list[str], seconds: list[str], batch_size: int) -> list[float]:
        import torch

        device = next(self.heads.parameters()).device
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(firsts), batch_size):
                batch = self.tokenizer(firsts[start:start + batch_size], seconds[start:start + batch_size],
                                       padding=True, truncation="longest_first", max_length=self.max_length,
                                       return_tensors="pt").to(device)
                logits = self.heads[task](pooled(self.encoder, batch)).squeeze(-1)
                out.extend(torch.sigmoid(logits.float()).cpu().tolist())
        return out

    def prob(self, premise_lines, hypothesis, *, batch_size: int = 64):
        """``P(consistent)`` of ``hypothesis`` given ``premise_lines``.

        One pair: ``prob(["line", ...], "text") -> float``. Batched: ``prob([[lines], ...], ["text", ...])
        -> list[float]`` (one premise list per hypothesis).
        """
        if isinstance(hypothesis, str):
            return self._probs("consistency", [premise_text(premise_lines)], [hypothesis], batch_size)[0]
        hyps = list(hypothesis)
        if len(premise_lines) != len(hyps):
            raise ValueError(f"{len(premise_lines)} premise lists but {len(hyps)} hypotheses")
        return self._probs("consistency", [premise_text(p) for p in premise_lines], hyps, batch_size)

    def coherence(self, queries, responses, *, batch_size: int = 64):
        """``P(the response answers the query)``; one pair (two strings) or two equal-length lists."""
        if isinstance(responses, str):
            return self._probs("coherence", [str(queries)], [responses], batch_size)[0]
        q, r = list(queries), list(responses)
        if len(q) != len(r):
            raise ValueError(f"{len(q)} queries but {len(r)} responses")
        return self._probs("coherence", q, r, batch_size)
