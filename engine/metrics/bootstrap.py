"""Bootstrap confidence intervals for every metric, per-item and corpus-level alike (torch-free).

A bootstrap resample draws ``n`` items with replacement from the ``n`` evaluated items (Efron &
Tibshirani 1993; the percentile interval, as in Koehn 2004 for BLEU). One resample is a vector of
*draw counts* ``w`` (``w[i]`` = how often item ``i`` was drawn, ``sum(w) == n``), so

* a per-item metric (ROUGE, Persona-F1, S-Dist, Con.S) resamples as ``w @ scores / n``;
* a corpus metric resamples from per-item sufficient statistics: BLEU-1 from summed sacrebleu
  statistics (``w @ stats``), C-Dist from an n-gram × item incidence matrix (an n-gram is present in
  the resample when an item containing it was drawn).

Distinct-n needs one correction: a resample that draws a response twice adds its n-grams to the total but
no new distinct ones, so resampled C-Dist values sit well below the estimate (on ConvAI2's 7.3k replies,
C-Dist-2 0.394 vs resample mean 0.278). A metric with ``shift_to_estimate = True`` therefore gets the
percentile interval of its resamples shifted by the bootstrap bias estimate (``mean(resamples) - value``), so
the interval keeps the bootstrap's spread but is centred where the estimate is.

Every metric object implements :class:`Scored`; :func:`resample_weights` draws one weight matrix that
several metrics (and several systems answering the same items) share, which makes the intervals
*paired*: a difference between two systems can be bootstrapped from the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


class Scored(Protocol):
    """A metric evaluated on ``n_items`` items: its value, and its value on bootstrap resamples."""

    n_items: int

    def value(self) -> float: ...

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        """Values on the resamples given by ``weights`` (shape ``(R, n_items)``, draw counts)."""
        ...


def resample_weights(n_items: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n_items)`` draw counts of ``n_items`` draws with replacement (seeded)."""
    if n_items < 1:
        raise ValueError("a bootstrap needs at least one item")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_resamples).astype(np.float64)


def percentile_interval(values: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``values`` (NaNs ignored)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level}")
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return (float(lo), float(hi))


def interval(scored: Scored, weights: np.ndarray | None = None, *, n_resamples: int = DEFAULT_RESAMPLES,
             seed: int = 0, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Bootstrap ``level`` interval of a :class:`Scored` metric (draws its own weights unless given)."""
    if weights is None:
        weights = resample_weights(scored.n_items, n_resamples, seed)
    if weights.shape[1] != scored.n_items:
        raise ValueError(f"weights are for {weights.shape[1]} items, the metric has {scored.n_items}")
    values = np.asarray(scored.resampled(weights), dtype=float)
    if getattr(scored, "shift_to_estimate", False) and np.isfinite(values).any():
        values = values - (np.nanmean(values) - scored.value())
    lo, hi = percentile_interval(values, level)
    return (max(0.0, lo), min(1.0, hi)) if np.isfinite(lo) else (lo, hi)


@dataclass
class MeanScore:
    """A per-item metric: the mean of ``scores`` (one per item; NaN = the item does not count, e.g. an
    S-Dist item whose responses have no bigram)."""

    scores: np.ndarray

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=float)

    @property
    def n_items(self) -> int:
        return int(self.scores.size)

    def value(self) -> float:
        ok = ~np.isnan(self.scores)
        return float(self.scores[ok].mean()) if ok.any() else float("nan")

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        ok = ~np.isnan(self.scores)
        w = weights[:, ok]
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, w @ self.scores[ok] / np.where(total > 0, total, 1), np.nan)


def mean_ci(values: Sequence[float], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
            level: float = DEFAULT_LEVEL) -> tuple[float, tuple[float, float]]:
    """Per-item scores → ``(mean, (lo, hi))``, the bootstrap ``level`` interval of the mean."""
    s = MeanScore(np.asarray(values, dtype=float))
    return s.value(), interval(s, n_resamples=n_resamples, seed=seed, level=level)
