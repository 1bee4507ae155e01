"""Compare-page votes stored in the study, append-only, with the transcripts both sides produced.

A vote is one row of ``compare_votes``: the two systems, the outcome (``left``/``right``/``tie``/
``both_bad``), whether it was blind, who voted, the transcript of both panels, the partners of each
session and, per system, what it stored and retrieved between sessions (``memory``). Rows cannot be
updated or deleted (triggers), so the leaderboard can always be recomputed and audited from the study.
Votes kept by older versions in ``DATA_DIR/compare/votes.jsonl`` are taken in once by
:func:`import_votes_jsonl` (a torn last line from a killed process is skipped; any other bad line
is a located error and nothing is taken in).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from .db import StudyError, now, open_study, write_tx

OUTCOMES = ("left", "right", "tie", "both_bad")


def new_comparison_id() -> str:
    return uuid.uuid4().hex[:12]


def _dumps(value, field) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StudyError(f"vote field {field}: cannot be stored as JSON ({e})") from None


def add_vote(study_or_path, left: str, right: str, outcome: str, *, blind: bool, transcript: dict,
             partners: list | None = None, memory: dict | None = None, comparison: str = "", voter: str = "",
             origin: str = "compare", created_at: str | None = None) -> dict:
    """Append one vote (its own committed transaction); returns the stored record."""
    if outcome not in OUTCOMES:
        raise StudyError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    if not left or not right or left == right:
        raise StudyError(f"a vote compares two different systems, got {left!r} and {right!r}")
    record = {"created_at": created_at or now(), "comparison": comparison or new_comparison_id(), "left": left,
              "right": right, "outcome": outcome, "blind": bool(blind), "voter": voter,
              "transcript": transcript or {}, "partners": partners or [], "memory": memory or {}, "origin": origin}
    with open_study(study_or_path) as study, write_tx(study):
        record["id"] = study.conn.execute(
            "INSERT INTO compare_votes (created_at, comparison, left_system, right_system, outcome, blind, voter,"
            " transcript, partners, memory, origin) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (record["created_at"], record["comparison"], left, right, outcome, int(bool(blind)), voter,
             _dumps(record["transcript"], "transcript"), _dumps(record["partners"], "partners"),
             _dumps(record["memory"], "memory"), origin)).lastrowid
    return record


def votes(study_or_path, *, with_transcripts: bool = False) -> list[dict]:
    """Every vote, oldest first: ``left``, ``right``, ``outcome``, ``blind``, … (transcripts on request)."""
    cols = "id, created_at, comparison, left_system, right_system, outcome, blind, voter, origin"
    if with_transcripts:
        cols += ", transcript, partners, memory"
    with open_study(study_or_path) as study:
        out = []
        for r in study.query(f"SELECT {cols} FROM compare_votes ORDER BY id"):
            r["left"], r["right"] = r.pop("left_system"), r.pop("right_system")
            r["blind"] = bool(r["blind"])
            for key in ("transcript", "partners", "memory"):
                if key in r:
                    r[key] = json.loads(r[key])
            out.append(r)
        return out


def import_votes_jsonl(study_or_path, path) -> int:
    """Take in a legacy ``votes.jsonl`` (all-or-nothing; lines already taken in are skipped)."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):  # a torn last line from a kill
                break
            raise StudyError(f"{path}: line {n}: malformed JSON ({e.msg})") from None
        for key in ("left", "right", "outcome"):
            if key not in rec:
                raise StudyError(f"{path}: line {n}: field {key!r} missing")
        if rec["outcome"] not in OUTCOMES:
            raise StudyError(f"{path}: line {n}: field 'outcome': {rec['outcome']!r} is not one of {', '.join(OUTCOMES)}")
        records.append((n, rec))
    with open_study(study_or_path) as study, write_tx(study):
        done = {r["comparison"] for r in study.query("SELECT comparison FROM compare_votes WHERE origin = 'votes.jsonl'")}
        added = 0
        for n, rec in records:
            key = f"jsonl:{path.name}:{n}"
            if key in done or rec["left"] == rec["right"]:
                continue
            study.conn.execute(
                "INSERT INTO compare_votes (created_at, comparison, left_system, right_system, outcome, blind, voter,"
                " transcript, partners, memory, origin) VALUES (?,?,?,?,?,?,?,?,?,?, 'votes.jsonl')",
                (str(rec.get("time") or now()), key, rec["left"], rec["right"], rec["outcome"], int(bool(rec.get("blind"))),
                 "", _dumps(rec.get("transcript", {}), "transcript"), _dumps(rec.get("partners", []), "partners"), "{}"))
            added += 1
        return added
