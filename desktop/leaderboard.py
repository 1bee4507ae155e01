"""Bradley–Terry ratings with bootstrap intervals for the Compare page's pairwise votes.

Bradley–Terry model (Bradley & Terry 1952): P(i beats j) = p_i / (p_i + p_j). Strengths are fitted
by the minorisation–maximisation iteration of Hunter (2004, *Ann. Statist.* 32(1), Eq. 3):

    p_i ← W_i / Σ_j n_ij / (p_i + p_j)

with W_i the wins of i (a tie or "both bad" counts as half a win for each side, as in Chatbot
Arena's ratings) and n_ij the games between i and j. A weak prior — ``prior`` virtual games won
and lost against a reference player of strength 1 — keeps an unbeaten or winless system finite.
Ratings are reported on the Elo scale, ``1000 + 400·log10(p_i / geometric mean)``; the interval is
the 2.5–97.5 % percentile of ratings refitted on votes resampled with replacement.

Pure numpy: no torch, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTCOMES = ("left", "right", "tie", "both_bad")


@dataclass
class Rating:
    system: str
    rating: float
    low: float
    high: float
    games: int
    wins: int
    losses: int
    ties: int


def _tables(votes: list[tuple[str, str, str]], systems: list[str]):
    index = {s: i for i, s in enumerate(systems)}
    k = len(systems)
    wins = np.zeros((k, k))  # wins[i, j]: i over j (ties add 0.5 both ways)
    for left, right, outcome in votes:
        a, b = index[left], index[right]
        if outcome == "left":
            wins[a, b] += 1
        elif outcome == "right":
            wins[b, a] += 1
        elif outcome in ("tie", "both_bad"):
            wins[a, b] += 0.5
            wins[b, a] += 0.5
        else:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
    return wins


def fit_strengths(wins: np.ndarray, prior: float = 0.5, iters: int = 500, tol: float = 1e-10) -> np.ndarray:
    """MM fit of Bradley–Terry strengths from a wins matrix (Hunter 2004, Eq. 3, with the prior)."""
    k = wins.shape[0]
    games = wins + wins.T
    w = wins.sum(axis=1) + prior
    p = np.ones(k)
    for _ in range(iters):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1) + 2 * prior / (p + 1.0)
        new = w / denom
        if np.max(np.abs(np.log(new) - np.log(p))) < tol:
            p = new
            break
        p = new
    return p


def to_elo(p: np.ndarray) -> np.ndarray:
    logp = np.log10(p)
    return 1000.0 + 400.0 * (logp - logp.mean())


def leaderboard(votes: list[tuple[str, str, str]], *, bootstrap: int = 200, seed: int = 0,
                prior: float = 0.5) -> list[Rating]:
    """Ratings for every system in ``votes`` = [(left system, right system, outcome)], best first."""
    votes = [(str(l), str(r), str(o)) for l, r, o in votes if l != r]
    systems = sorted({s for l, r, _ in votes for s in (l, r)})
    if not systems:
        return []
    point = to_elo(fit_strengths(_tables(votes, systems), prior))
    rng = np.random.default_rng(seed)
    samples = np.empty((bootstrap, len(systems)))
    for b in range(bootstrap):
        pick = rng.integers(0, len(votes), len(votes))
        samples[b] = to_elo(fit_strengths(_tables([votes[i] for i in pick], systems), prior))
    lo, hi = (np.percentile(samples, [2.5, 97.5], axis=0) if bootstrap else (point, point))
    out = []
    for i, s in enumerate(systems):
        won = sum(1 for l, r, o in votes if (l == s and o == "left") or (r == s and o == "right"))
        lost = sum(1 for l, r, o in votes if (l == s and o == "right") or (r == s and o == "left"))
        tied = sum(1 for l, r, o in votes if s in (l, r) and o in ("tie", "both_bad"))
        out.append(Rating(s, float(point[i]), float(lo[i]), float(hi[i]), won + lost + tied, won, lost, tied))
    return sorted(out, key=lambda r: -r.rating)
