"""A small learned memory-link scorer over the memory encoder: the embedded preset's alternative linker.

The paper's linker is the dialogue module answering ``positive``/``negative`` for ``memory sentence1: <m1>
memory sentence2: <m2>`` (§4.1, App. E.1); MemLab keeps it (``linker="dialogue"``).  On the embedded 135M
generator trained on a CPU that linker stays close to chance, so the embedded preset can instead score a pair
with a logistic regression over the memory encoder's vectors u, v of the two memories (provenance removed):
features ``[cos(u, v), u ⊙ v, |u − v|]`` (the usual sentence-pair features of Conneau et al., 2017), trained
on realistic pair mixes (most pairs unrelated) and calibrated on held-out pairs like the dialogue linker
(``linker.json``: the highest precision at a stated recall).  Which one an EMMA preset uses is decided by
those held-out figures, and stated in the app.

The head is one safetensors file (``weight`` (2d+1,), ``bias`` (1,), metadata: encoder, threshold, figures).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.systems.emma import formats

HEAD_FILE = "link_head.safetensors"


def features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pair features of L2-normalised vectors: ``[cos, u*v, |u-v|]`` (rows = pairs)."""
    cos = (u * v).sum(-1, keepdims=True)
    return np.concatenate([cos, u * v, np.abs(u - v)], axis=-1).astype(np.float32)


class LinkHead:
    """p(related) = sigmoid(w · features(u, v) + b)."""

    def __init__(self, weight: np.ndarray, bias: float, threshold: float = 0.5, meta: dict | None = None):
        self.weight, self.bias, self.threshold = np.asarray(weight, np.float32), float(bias), float(threshold)
        self.meta = dict(meta or {})

    def probabilities(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if len(u) == 0:
            return np.zeros(0)
        z = features(u, v) @ self.weight + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def score_texts(self, embed, pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0)
        texts = sorted({formats.strip_provenance(t) for p in pairs for t in p})
        vecs = np.asarray(embed(texts))
        idx = {t: i for i, t in enumerate(texts)}
        a = vecs[[idx[formats.strip_provenance(x)] for x, _ in pairs]]
        b = vecs[[idx[formats.strip_provenance(y)] for _, y in pairs]]
        return self.probabilities(a, b)

    def save(self, path) -> Path:
        import torch
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"weight": torch.tensor(self.weight), "bias": torch.tensor([self.bias])}, str(path),
                  metadata={"format": "emma-link-head/1", "threshold": str(self.threshold),
                            "meta": json.dumps(self.meta)})
        return path

    @classmethod
    def load(cls, path) -> "LinkHead":
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="np") as f:
                md = dict(f.metadata() or {})
                w, b = f.get_tensor("weight"), f.get_tensor("bias")
        except Exception as e:  # noqa: BLE001 — reported with the file name
            raise ValueError(f"{path}: not an EMMA link head ({e})") from None
        if md.get("format") != "emma-link-head/1":
            raise ValueError(f"{path}: metadata 'format' is {md.get('format')!r}, not 'emma-link-head/1'")
        return cls(w, float(b[0]), float(md.get("threshold", 0.5)), json.loads(md.get("meta", "{}")))


def fit(u: np.ndarray, v: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, epochs: int = 300, seed: int = 0) -> LinkHead:
    """Logistic regression (full-batch L-BFGS in torch) with class weights balancing the rare positives."""
    import torch

    torch.manual_seed(seed)
    x = torch.tensor(features(u, v))
    t = torch.tensor(y, dtype=torch.float32)
    pos = float(t.mean()) if len(t) else 0.5
    weights = torch.where(t > 0, 0.5 / max(pos, 1e-3), 0.5 / max(1 - pos, 1e-3))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=0.5, max_iter=epochs, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = x @ w + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(z, t, reduction="none") * weights).mean()
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LinkHead(w.detach().numpy(), float(b.detach()[0]))
