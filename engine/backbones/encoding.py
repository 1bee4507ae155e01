"""Sentence embeddings from a loaded encoder: mean pooling over real tokens (or the [CLS] vector), then L2
normalisation, so a dot product is the cosine similarity that EMMA's retriever ranks memories by
(paper 001 §4.2: sim(c, m) = cos(E_c(c), E_m(m))).
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import LoadedEncoder


def pool(last_hidden, attention_mask, pooling: str):
    """Mean of the hidden states where ``attention_mask`` is 1 (``"mean"``), or the first token (``"cls"``)."""
    if pooling == "cls":
        return last_hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def encode(encoder: LoadedEncoder, texts: Sequence[str], batch_size: int = 32, max_length: int = 256):
    """Embed ``texts``: a float32 CPU tensor of shape (len(texts), hidden), each row of unit L2 norm.

    Texts longer than ``max_length`` tokens are truncated. Runs without gradients, in batches.
    """
    import torch
    import torch.nn.functional as F

    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of texts, not one string (wrap it in a list)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    model, tok = encoder.model, encoder.tokenizer
    device = next(model.parameters()).device
    hidden = model.config.hidden_size
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tok(list(texts[start:start + batch_size]), padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(device)
            states = model(**batch).last_hidden_state
            vecs = pool(states, batch["attention_mask"], encoder.pooling)
            out.append(F.normalize(vecs.float(), p=2, dim=-1).cpu())
    if not out:
        return torch.zeros((0, hidden), dtype=torch.float32)
    return torch.cat(out)
