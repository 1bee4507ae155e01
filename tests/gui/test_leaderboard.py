"""Bradley–Terry leaderboard maths (desktop/leaderboard.py) and the vote log."""

import json

import numpy as np
import pytest

from desktop import compare_store
from desktop.leaderboard import fit_strengths, leaderboard


def _simulate(strengths: dict, n: int, seed=0):
    rng = np.random.default_rng(seed)
    names = list(strengths)
    votes = []
    for _ in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        pa, pb = strengths[names[a]], strengths[names[b]]
        votes.append((names[a], names[b], "left" if rng.random() < pa / (pa + pb) else "right"))
    return votes


def test_recovers_the_order_of_true_strengths():
    votes = _simulate({"emma": 4.0, "summary": 2.0, "rag": 1.0, "no-memory": 0.5}, 800)
    board = leaderboard(votes, bootstrap=50)
    assert [r.system for r in board] == ["emma", "summary", "rag", "no-memory"]
    # Elo-scale gap between 4.0 and 0.5 is 400*log10(8) ≈ 361
    gap = board[0].rating - board[-1].rating
    assert 250 < gap < 480
    for r in board:
        assert r.low <= r.rating <= r.high


def test_ties_and_both_bad_give_equal_ratings():
    votes = [("emma", "summary", "tie")] * 10 + [("summary", "emma", "both_bad")] * 10
    board = leaderboard(votes, bootstrap=20)
    assert abs(board[0].rating - board[1].rating) < 1e-6
    assert board[0].ties == 20 and board[0].wins == 0


def test_unbeaten_system_stays_finite_and_intervals_shrink_with_votes():
    few = leaderboard([("emma", "rag", "left")] * 16 + [("emma", "rag", "right")] * 4, bootstrap=100)
    many = leaderboard([("emma", "rag", "left")] * 120 + [("emma", "rag", "right")] * 30, bootstrap=100)
    assert np.isfinite(few[0].rating) and few[0].system == "emma"
    assert (many[0].high - many[0].low) < (few[0].high - few[0].low)


def test_mm_fit_matches_closed_form_for_two_players():
    wins = np.array([[0.0, 30.0], [10.0, 0.0]])
    p = fit_strengths(wins, prior=0.0)
    assert p[0] / p[1] == pytest.approx(3.0, rel=1e-6)


def test_unknown_outcome_is_an_error():
    with pytest.raises(ValueError, match="outcome"):
        leaderboard([("a", "b", "maybe")])


def test_votes_are_appended_to_the_study_and_legacy_jsonl_is_taken_in(tmp_path):
    legacy = compare_store.votes_path(tmp_path)
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"time": "2026-01-01T00:00:00", "left": "rag", "right": "emma", "outcome": "right"}) + "\n")
    compare_store.append_vote(tmp_path, "emma", "summary", "left", blind=True, transcript={"left": [], "right": []},
                              memory={"emma": {"stored": [["m1"]]}})
    compare_store.append_vote(tmp_path, "summary", "emma", "tie", blind=False, transcript={})
    votes = compare_store.read_votes(tmp_path)
    assert [(v["left"], v["outcome"], v["blind"]) for v in votes] == [
        ("rag", "right", False), ("emma", "left", True), ("summary", "tie", False)]
    assert compare_store.default_study_path(tmp_path).exists()
    with pytest.raises(ValueError):
        compare_store.append_vote(tmp_path, "a", "b", "win", blind=True, transcript={})
    # an open study gets the votes instead, so the comparison is part of it
    from annotation.db import init_study

    init_study(tmp_path / "study.db").close()
    compare_store.append_vote(tmp_path, "emma", "rag", "left", blind=True, transcript={}, study_path=tmp_path / "study.db")
    assert len(compare_store.read_votes(tmp_path, tmp_path / "study.db")) == 2  # its own vote + the legacy one


def test_one_vote_shows_no_interval_and_enough_votes_give_a_real_bootstrap():
    from desktop.leaderboard import MIN_GAMES_FOR_INTERVAL, pair_counts

    [a, b] = leaderboard([("emma", "rag", "left")])
    assert a.low is None and a.interval_text() == f"needs {MIN_GAMES_FOR_INTERVAL - 1} more votes"
    votes = _simulate({"emma": 2.0, "rag": 1.0, "summary": 1.0}, 90, seed=4)
    board = leaderboard(votes)
    for r in board:
        assert r.games >= MIN_GAMES_FOR_INTERVAL and r.low < r.rating < r.high  # a real spread, not a point
    pairs = pair_counts(votes)
    assert sum(p.games for p in pairs) == 90 and len(pairs) == 3
    p = pairs[0]
    assert p.games == p.a_wins + p.b_wins + p.ties + p.both_bad
