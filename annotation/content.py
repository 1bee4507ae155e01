"""What a study holds (content tables only — no ratings): episodes back as objects, sources, counts.

The Annotate and Studies pages and the reports read the study's content through these functions
instead of writing SQL against the schema (the schema belongs to :mod:`annotation.db`).
"""

from __future__ import annotations

import json

from engine.data.model import Episode, Link, Memory, Session, Speaker, Turn

from .db import StudyError, open_study

CONTENT_TABLES = ("episodes", "sessions", "turns", "memories", "memory_links", "memory_tags")


def load_episode(study_or_path, episode_id: str) -> Episode:
    """The episode as stored in the study."""
    with open_study(study_or_path) as study:
        row = study.query("SELECT * FROM episodes WHERE id = ?", (episode_id,))
        if not row:
            raise StudyError(f"no episode {episode_id!r} in the study")
        ep = row[0]
        partners = [Speaker(p["name"], p.get("job", "")) for p in json.loads(ep["partners"])]
        tags: dict[str, list[str]] = {}
        for r in study.query("SELECT turn_id, memory_id FROM memory_tags WHERE episode_id = ? ORDER BY rowid", (episode_id,)):
            tags.setdefault(r["turn_id"], []).append(r["memory_id"])
        turns_by_session: dict[int, list[Turn]] = {}
        for t in study.query("SELECT * FROM turns WHERE episode_id = ? ORDER BY session_idx, position", (episode_id,)):
            turns_by_session.setdefault(t["session_idx"], []).append(
                Turn(t["turn_id"], t["speaker"], t["text"], tags.get(t["turn_id"], [])))
        sessions = [Session(s["idx"], Speaker(s["partner_name"], s["partner_job"]), s["event"],
                            turns_by_session.get(s["idx"], []), s["date"])
                    for s in study.query("SELECT * FROM sessions WHERE episode_id = ? ORDER BY idx", (episode_id,))]
        memories = [Memory(m["memory_id"], m["owner"], m["about"], m["text"], m["session_idx"], json.loads(m["source_turns"]))
                    for m in study.query("SELECT * FROM memories WHERE episode_id = ? ORDER BY rowid", (episode_id,))]
        links = [Link(l["src"], l["dst"], l["kind"])
                 for l in study.query("SELECT * FROM memory_links WHERE episode_id = ? ORDER BY rowid", (episode_id,))]
        return Episode(ep["id"], Speaker(ep["main_name"], ep["main_job"]), partners, sessions, memories, links,
                       ep["source"], json.loads(ep["meta"] or "{}"))


def episode_sources(study_or_path) -> list[tuple[str, int]]:
    """``(source, number of episodes)`` for every source in the study (``live-chat`` = saved chats)."""
    with open_study(study_or_path) as study:
        return [(r["source"] or "", r["n"]) for r in study.query(
            "SELECT source, COUNT(*) AS n FROM episodes GROUP BY source ORDER BY source")]


def episode_ids(study_or_path, source: str | None = None) -> list[str]:
    with open_study(study_or_path) as study:
        if source is None:
            return [r["id"] for r in study.query("SELECT id FROM episodes ORDER BY id")]
        return [r["id"] for r in study.query("SELECT id FROM episodes WHERE source = ? ORDER BY id", (source,))]


def content_counts(study_or_path) -> dict[str, int]:
    with open_study(study_or_path) as study:
        return {t: study.db[t].count for t in CONTENT_TABLES}


def given_memory_ids(episode: Episode) -> set[str]:
    """Memories given before the conversation (ConvAI2 persona lines), not summarised from turns.

    Read from ``meta["persona_memories"]`` (set by the ConvAI2 reader); episodes imported before
    that key existed are recognised by their source and the absence of source turns."""
    listed = episode.meta.get("persona_memories") if isinstance(episode.meta, dict) else None
    if isinstance(listed, list):
        return {str(x) for x in listed}
    if episode.source == "convai2":
        return {m.id for m in episode.memories if not m.source_turns}
    return set()
