"""Distinct-n diversity (Li et al. 2016), in MDR §5's two forms (torch-free).

Tokens are lower-cased whitespace tokens (:func:`engine.metrics.text.whitespace_tokens`).

* **C-Dist-n** (corpus): distinct n-grams over *all* single responses ÷ all their n-grams.
* **S-Dist-n** (sampled): the same ratio over the five (or however many) sampled responses of one query,
  averaged over queries; a query whose responses hold no n-gram at all does not count (it has no ratio),
  as in CLV's released metric code (Tang et al. 2023), which MDR follows.

A corpus with no n-gram at all has C-Dist 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .bootstrap import MeanScore
from .text import ngrams, whitespace_tokens


@dataclass
class DistinctScore:
    """C-Dist-n with bootstrap support: an n-gram × item incidence matrix and per-item n-gram counts."""

    incidence: object  # scipy.sparse csr (n_ngrams, n_items), 1 where the item contains the n-gram
    counts: np.ndarray  # n-grams per item (with repeats)
    shift_to_estimate = True  # duplicated draws bias resamples low (see engine.metrics.bootstrap)

    @property
    def n_items(self) -> int:
        return int(self.counts.size)

    def value(self) -> float:
        total = self.counts.sum()
        return float(self.incidence.shape[0] / total) if total else 0.0

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        total = weights @ self.counts
        present = (self.incidence @ weights.T) > 0  # (n_ngrams, R)
        distinct = np.asarray(present.sum(axis=0)).ravel()
        return np.where(total > 0, distinct / np.where(total > 0, total, 1), 0.0)


def c_dist_scored(responses: Sequence[str], n: int) -> DistinctScore:
    from scipy.sparse import csr_matrix

    index: dict[tuple[str, ...], int] = {}
    rows, cols, counts = [], [], []
    for item, text in enumerate(responses):
        grams = ngrams(whitespace_tokens(text), n)
        counts.append(len(grams))
        for g in set(grams):
            rows.append(index.setdefault(g, len(index)))
            cols.append(item)
    data = np.ones(len(rows), dtype=np.float64)
    incidence = csr_matrix((data, (rows, cols)), shape=(len(index), len(responses)))
    return DistinctScore(incidence, np.asarray(counts, dtype=np.float64))


def c_dist(responses: Sequence[str], n: int) -> float:
    """C-Dist-n: |distinct n-grams over all responses| / |all n-grams| (MDR §5)."""
    return c_dist_scored(responses, n).value()


def distinct_ratio(texts: Sequence[str], n: int) -> float | None:
    """Distinct n-grams ÷ n-grams over ``texts`` pooled; ``None`` when they hold no n-gram."""
    grams = [g for t in texts for g in ngrams(whitespace_tokens(t), n)]
    return len(set(grams)) / len(grams) if grams else None


def s_dist_items(groups: Sequence[Sequence[str]], n: int) -> list[float]:
    """Per-query S-Dist-n: the distinct ratio over that query's sampled responses (NaN: no n-gram)."""
    out = []
    for g in groups:
        r = distinct_ratio(g, n)
        out.append(float("nan") if r is None else r)
    return out


def s_dist(groups: Sequence[Sequence[str]], n: int) -> float:
    """S-Dist-n: the per-query distinct ratio over its sampled responses, averaged over queries (MDR §5)."""
    return MeanScore(s_dist_items(groups, n)).value()
