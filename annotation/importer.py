"""Import episodes into a study — validate everything first, then write all-or-nothing.

Sources (DESIGN.md "Study database"): ``memlab-episode/1`` files, ConvAI2, LoCoMo (through
:func:`engine.data.readers.read_any`) and in-memory episodes from saved live chats or self-play
(:func:`import_episodes`). On any error — a validation failure in the file, an episode id the
study already holds, a database error — the database is left exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from engine.data.errors import DataFormatError
from engine.data.model import Episode
from engine.data.readers import detect_format, read_any

from .db import Study, as_study, now, write_tx

Progress = Callable[[int, int], None]


@dataclass
class ImportResult:
    file: str
    format: str
    import_id: int
    episodes: int
    sessions: int
    turns: int
    memories: int
    links: int
    tags: int


def _rows(ep: Episode, import_id: int) -> dict[str, list[dict]]:
    rows = {
        "episodes": [{
            "id": ep.id, "source": ep.source, "main_name": ep.main.name, "main_job": ep.main.job,
            "partners": json.dumps([{"name": p.name, "job": p.job} for p in ep.partners], ensure_ascii=False),
            "meta": json.dumps(ep.meta, ensure_ascii=False), "import_id": import_id}],
        "sessions": [], "turns": [], "memories": [], "memory_links": [], "memory_tags": [],
    }
    for s in ep.sessions:
        rows["sessions"].append({"episode_id": ep.id, "idx": s.index, "partner_name": s.partner.name,
                                 "partner_job": s.partner.job, "event": s.event, "date": s.date})
        for pos, t in enumerate(s.turns):
            rows["turns"].append({"episode_id": ep.id, "turn_id": t.id, "session_idx": s.index,
                                  "position": pos, "speaker": t.speaker, "text": t.text})
            for mid in dict.fromkeys(t.memory_ids):
                rows["memory_tags"].append({"episode_id": ep.id, "turn_id": t.id, "memory_id": mid})
    for m in ep.memories:
        rows["memories"].append({"episode_id": ep.id, "memory_id": m.id, "owner": m.owner, "about": m.about,
                                 "text": m.text, "session_idx": m.session,
                                 "source_turns": json.dumps(m.source_turns, ensure_ascii=False)})
    for l in ep.links:
        rows["memory_links"].append({"episode_id": ep.id, "src": l.src, "dst": l.dst, "kind": l.kind})
    return rows


def import_episodes(study_or_path, episodes: Iterable[Episode], *, file: str = "<memory>",
                    format: str = "memlab", sha256: str = "", progress: Progress | None = None) -> ImportResult:
    """Write already-validated episodes in one transaction; any error leaves the study unchanged."""
    study, close = as_study(study_or_path)
    episodes = list(episodes)
    try:
        ids = [e.id for e in episodes]
        seen = set()
        for i, eid in enumerate(ids):
            if eid in seen:
                raise DataFormatError(file, eid, "id", "duplicate episode id in this import")
            seen.add(eid)
        counts = dict.fromkeys(("sessions", "turns", "memories", "memory_links", "memory_tags"), 0)
        total = len(episodes)
        with write_tx(study):
            _check_new(study, file, ids)
            cur = study.conn.execute(
                "INSERT INTO imports (file, format, sha256, n_episodes, imported_at) VALUES (?, ?, ?, ?, ?)",
                (str(file), format, sha256, total, now()))
            import_id = cur.lastrowid
            for done, ep in enumerate(episodes, 1):
                for table, rows in _rows(ep, import_id).items():
                    if rows:
                        study.db[table].insert_all(rows)
                        if table in counts:
                            counts[table] += len(rows)
                if progress:
                    progress(done, total)
        return ImportResult(str(file), format, import_id, total, counts["sessions"], counts["turns"],
                            counts["memories"], counts["memory_links"], counts["memory_tags"])
    finally:
        if close:
            study.close()


def _check_new(study: Study, file, ids: list[str]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        row = study.conn.execute(
            f"SELECT e.id, i.file FROM episodes e LEFT JOIN imports i ON i.id = e.import_id WHERE e.id IN ({marks}) LIMIT 1",
            chunk).fetchone()
        if row:
            raise DataFormatError(file, row[0], "id", f"episode {row[0]!r} is already in the study (imported from {row[1]})")


def import_file(study_or_path, path, format: str = "auto", *, progress: Progress | None = None) -> ImportResult:
    """Read, validate and import one file (``memlab``/``convai2``/``locomo``/``auto``), all-or-nothing.

    Raises :class:`DataFormatError` (file, record, field) for bad input; the study is unchanged then.
    """
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    episodes = read_any(path, fmt)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return import_episodes(study_or_path, episodes, file=str(path), format=fmt, sha256=digest, progress=progress)
