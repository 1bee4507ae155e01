"""Where the Compare page keeps its votes: in a study database, append-only, with the transcripts.

A vote goes into the open study (so a comparison is part of the study and its report) or, when no
study is open, into ``DATA_DIR/compare/comparisons.db`` — itself a study file. The rows are
written by :func:`annotation.comparisons.add_vote` (its own committed transaction, so a crash loses
nothing already voted). Votes that older versions appended to ``DATA_DIR/compare/votes.jsonl`` are
taken into the study once, the first time it is used here; the file is left where it is.
"""

from __future__ import annotations

from pathlib import Path

from annotation.comparisons import OUTCOMES, add_vote, import_votes_jsonl, new_comparison_id, votes
from annotation.db import open_study

__all__ = ["OUTCOMES", "append_vote", "new_comparison_id", "read_votes", "study_path_for", "votes_path"]


def votes_path(data_dir) -> Path:
    """The legacy JSON Lines vote log (read once, never written)."""
    return Path(data_dir) / "compare" / "votes.jsonl"


def default_study_path(data_dir) -> Path:
    return Path(data_dir) / "compare" / "comparisons.db"


def study_path_for(data_dir, study_path=None) -> Path:
    """The study votes go to: ``study_path`` when one is open, else the data folder's comparisons study."""
    path = Path(study_path) if study_path else default_study_path(data_dir)
    with open_study(path, create=True) as study:
        import_votes_jsonl(study, votes_path(data_dir))
    return path


def append_vote(data_dir, left: str, right: str, outcome: str, *, blind: bool, transcript: dict,
                partners: list | None = None, memory: dict | None = None, comparison: str = "",
                study_path=None, voter: str = "") -> dict:
    return add_vote(study_path_for(data_dir, study_path), left, right, outcome, blind=blind, transcript=transcript,
                    partners=partners, memory=memory, comparison=comparison, voter=voter)


def read_votes(data_dir, study_path=None) -> list[dict]:
    return votes(study_path_for(data_dir, study_path))
