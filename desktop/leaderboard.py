"""Bradley–Terry ratings with bootstrap intervals for the Compare page's pairwise votes.

Bradley–Terry model (Bradley & Terry 1952): P(i beats j) = p_i / (p_i + p_j). Strengths are fitted
by the minorisation–maximisation iteration of Hunter (2004, *Ann. Statist.* 32(1), Eq. 3):

    p_i ← W_i / Σ_j n_ij / (p_i + p_j)

with W_i the wins of i (a tie or "both bad" counts as half a win for each side, as in Chatbot
Arena's ratings) and n_ij the games between i and j. A weak prior — ``prior`` virtual games won
and lost against a reference player of strength 1 — keeps an unbeaten or winless system finite.
Ratings are reported on the Elo scale, ``1000 + 400·log10(p_i / geometric mean)``; the interval is
the 2.5–97.5 % percentile of ratings refitted on votes resampled with replacement
(:data:`BOOTSTRAP_RESAMPLES` resamples, as Chatbot Arena's leaderboard does).

An interval is shown only for a system with at least :data:`MIN_GAMES_FOR_INTERVAL` games: with a
handful of votes every resample is the same few votes and the "interval" collapses to a point
(one vote gave "1131 – 1131"), which reads as certainty. Below the minimum the board says how
many more votes are needed. :func:`pair_counts` gives the votes per pair of systems.

Pure numpy: no torch, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTCOMES = ("left", "right", "tie", "both_bad")
MIN_GAMES_FOR_INTERVAL = 20
BOOTSTRAP_RESAMPLES = 1000


@dataclass
class Rating:
    system: str
    rating: float
    low: float | None       # None: fewer than MIN_GAMES_FOR_INTERVAL games
    high: float | None
    games: int
    wins: int
    losses: int
    ties: int

    @property
    def has_interval(self) -> bool:
        return self.low is not None

    def interval_text(self, minimum: int = MIN_GAMES_FOR_INTERVAL) -> str:
        if self.has_interval:
            return f"{self.low:.0f} – {self.high:.0f}"
        return f"needs {minimum - self.games} more vote{'s' if minimum - self.games != 1 else ''}"


@dataclass
class PairCount:
    a: str
    b: str
    games: int
    a_wins: int
    b_wins: int
    ties: int
    both_bad: int


def pair_counts(votes: list[tuple[str, str, str]]) -> list[PairCount]:
    """Votes per unordered pair of systems (``a`` < ``b``), most-voted pair first."""
    table: dict[tuple[str, str], list[int]] = {}
    for left, right, outcome in votes:
        if left == right:
            continue
        a, b = sorted((left, right))
        row = table.setdefault((a, b), [0, 0, 0, 0])
        if outcome in ("left", "right"):
            winner = left if outcome == "left" else right
            row[0 if winner == a else 1] += 1
        elif outcome == "tie":
            row[2] += 1
        elif outcome == "both_bad":
            row[3] += 1
        else:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
    out = [PairCount(a, b, sum(r), r[0], r[1], r[2], r[3]) for (a, b), r in table.items()]
    return sorted(out, key=lambda p: (-p.games, p.a, p.b))


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


def fit_strengths_batch(wins: np.ndarray, prior: float = 0.5, iters: int = 500, tol: float = 1e-10) -> np.ndarray:
    """:func:`fit_strengths` for a stack of wins matrices ``(B, k, k)`` at once (the bootstrap)."""
    games = wins + np.transpose(wins, (0, 2, 1))
    w = wins.sum(axis=2) + prior
    p = np.ones(w.shape)
    for _ in range(iters):
        denom = (games / (p[:, :, None] + p[:, None, :])).sum(axis=2) + 2 * prior / (p + 1.0)
        new = w / denom
        done = np.max(np.abs(np.log(new) - np.log(p))) < tol
        p = new
        if done:
            break
    return p


def to_elo(p: np.ndarray) -> np.ndarray:
    logp = np.log10(p)
    return 1000.0 + 400.0 * (logp - logp.mean(axis=-1, keepdims=True))


def leaderboard(votes: list[tuple[str, str, str]], *, bootstrap: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                prior: float = 0.5, min_games: int = MIN_GAMES_FOR_INTERVAL) -> list[Rating]:
    """Ratings for every system in ``votes`` = [(left system, right system, outcome)], best first."""
    votes = [(str(l), str(r), str(o)) for l, r, o in votes if l != r]
    systems = sorted({s for l, r, _ in votes for s in (l, r)})
    if not systems:
        return []
    point = to_elo(fit_strengths(_tables(votes, systems), prior))
    k = len(systems)
    if bootstrap:
        # each vote's contribution to the wins matrix, so a resample is one matrix product
        contrib = np.stack([_tables([v], systems).ravel() for v in votes])          # (n, k*k)
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(len(votes), np.full(len(votes), 1 / len(votes)), size=bootstrap)  # (B, n)
        samples = to_elo(fit_strengths_batch((counts @ contrib).reshape(bootstrap, k, k), prior))
        lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
    else:
        lo = hi = point
    out = []
    for i, s in enumerate(systems):
        won = sum(1 for l, r, o in votes if (l == s and o == "left") or (r == s and o == "right"))
        lost = sum(1 for l, r, o in votes if (l == s and o == "right") or (r == s and o == "left"))
        tied = sum(1 for l, r, o in votes if s in (l, r) and o in ("tie", "both_bad"))
        games = won + lost + tied
        shown = bootstrap > 0 and games >= min_games
        out.append(Rating(s, float(point[i]), float(lo[i]) if shown else None, float(hi[i]) if shown else None,
                          games, won, lost, tied))
    return sorted(out, key=lambda r: -r.rating)
