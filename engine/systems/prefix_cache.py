"""Shared-prefix key/value caching for batched label scoring on causal models.

EMMA's memory linker (paper §4.1, "Memory Linker") scores ``positive``/``negative`` for many memory
pairs at session end. Every link prompt starts with the same tokens (chat template, system
instruction, ``memory sentence1:``), so the prefix is run through the model once, its
``past_key_values`` are kept per (model, prefix), and only the pair-dependent suffixes are run for
the whole batch on top of the cached prefix (expanded to the batch size).

* :func:`common_prefix_len` — longest common token prefix of several token-id lists.
* :class:`PrefixKV` — a prefix's per-layer keys/values (batch 1); :meth:`PrefixKV.expand` builds
  a fresh ``DynamicCache`` for a batch (the stored tensors are never mutated).
* :func:`prefix_kv` — the cached :class:`PrefixKV` for ``ids`` on ``model`` (computed on a miss; a
  small LRU per model). The key includes a fingerprint of the weights (parameter versions,
  active adapters), so training the model in place between calls never serves stale keys/values.
* :func:`extend` — a :class:`PrefixKV` extended by more tokens (one single-row forward).

Only plain full-attention ``DynamicLayer`` caches are supported; anything else (sliding-window or
linear-attention layers, static caches) raises :class:`Unsupported`, and the caller falls back to
the uncached path and says why.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

MAX_ENTRIES_PER_MODEL = 4


class Unsupported(RuntimeError):
    """This model's cache cannot be reused as a shared prefix (the reason is the message)."""


def common_prefix_len(seqs: list[list[int]]) -> int:
    """Length of the longest token prefix shared by every list in ``seqs`` (0 for none)."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


@dataclass(frozen=True)
class PrefixKV:
    """Keys/values of one prefix, per layer, each ``[1, heads, length, head_dim]``."""

    layers: tuple
    length: int

    def expand(self, batch: int):
        """A new ``DynamicCache`` holding this prefix for ``batch`` rows (the model may append to it).

        Its layers hold broadcast views of the stored tensors (no copy): a layer's ``update``
        concatenates the new keys/values, which builds fresh tensors and leaves these untouched."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        layers = []
        for k, v in self.layers:
            layer = DynamicLayer()
            layer.lazy_initialization(k, v)
            layer.keys, layer.values = k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)
            layers.append(layer)
        cache = DynamicCache()
        cache.layers = layers
        return cache


def _layers_of(cache) -> tuple:
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if layers is None:
        raise Unsupported(f"the model returned a {type(cache).__name__}, not a layered Cache")
    out = []
    for i, layer in enumerate(layers):
        if type(layer) is not DynamicLayer:
            raise Unsupported(f"cache layer {i} is a {type(layer).__name__} (only full-attention DynamicLayer "
                              f"prefixes can be shared)")
        if not layer.is_initialized:
            raise Unsupported(f"cache layer {i} holds no keys/values (KV sharing across layers)")
        out.append((layer.keys, layer.values))
    return tuple(out)


def _forward(model, ids: list[int], base: PrefixKV | None) -> PrefixKV:
    """Run ``ids`` (one row) after ``base`` (or from position 0) and return the keys/values of it all."""
    import torch
    from transformers import DynamicCache

    device = model.device
    start = base.length if base is not None else 0
    past = base.expand(1) if base is not None else DynamicCache()
    kw = dict(input_ids=torch.tensor([ids], device=device),
              attention_mask=torch.ones((1, start + len(ids)), dtype=torch.long, device=device),
              position_ids=torch.arange(start, start + len(ids), device=device).unsqueeze(0),
              past_key_values=past, use_cache=True)
    with torch.inference_mode():
        try:
            out = model(**kw, logits_to_keep=1)
        except TypeError:  # a model without logits_to_keep
            out = model(**kw)
    layers = _layers_of(out.past_key_values)
    return PrefixKV(layers, start + len(ids))


def extend(model, base: PrefixKV, ids: list[int]) -> PrefixKV:
    """``base`` followed by ``ids`` (not stored in the LRU: used for one batch's longer shared prefix)."""
    return _forward(model, ids, base) if ids else base


def weights_fingerprint(model) -> tuple:
    """Changes whenever the weights or the active adapters change (in-place optimiser steps bump
    each parameter's version counter; PEFT layers report their active/disabled/merged adapters)."""
    params = list(model.parameters())
    adapters = []
    for m in model.modules():
        if hasattr(m, "active_adapters") and hasattr(m, "disable_adapters") and hasattr(m, "merged"):
            try:
                adapters.append((tuple(m.active_adapters), bool(m.disable_adapters), bool(m.merged)))
            except Exception:  # noqa: BLE001 - an odd adapter layer: treat as always changing
                adapters.append(object())
    first = params[0] if params else None
    return (len(params), sum(p._version for p in params), tuple(adapters),
            None if first is None else (first.dtype, str(first.device)))


_STORE: "weakref.WeakKeyDictionary[object, OrderedDict]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()  # session ends may run in a worker thread while another scores


def prefix_kv(model, ids: list[int]) -> tuple[PrefixKV, bool]:
    """The keys/values of prefix ``ids`` on ``model``: (entry, True) from the cache, or computed now
    (False) — extending the longest cached prefix of ``ids`` when there is one."""
    with _LOCK:
        return _prefix_kv_locked(model, ids)


def _prefix_kv_locked(model, ids: list[int]) -> tuple[PrefixKV, bool]:
    entries = _STORE.setdefault(model, OrderedDict())
    key = (weights_fingerprint(model), tuple(ids))
    hit = entries.get(key)
    if hit is not None:
        entries.move_to_end(key)
        return hit, True
    for stale in [k for k in entries if k[0] != key[0]]:  # the weights changed: those keys/values are void
        del entries[stale]
    best = None
    for (_, pref), kv in entries.items():
        if len(pref) < len(ids) and (best is None or len(pref) > best.length) and tuple(ids[:len(pref)]) == pref:
            best = kv
    kv = _forward(model, ids[best.length:] if best else ids, best)
    entries[key] = kv
    while len(entries) > MAX_ENTRIES_PER_MODEL:
        entries.popitem(last=False)
    return kv, False


def clear(model=None) -> None:
    """Forget the cached prefixes of ``model`` (or of every model)."""
    with _LOCK:
        if model is None:
            _STORE.clear()
        else:
            _STORE.pop(model, None)
