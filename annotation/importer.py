"""Import episodes into a study — streamed, validated and written in one all-or-nothing transaction.

Sources (docs/architecture.md "Study database"): ``memlab-episode/1`` files, ConvAI2, LoCoMo
(through :mod:`engine.data.stream`, which validates each episode as it is read) and in-memory
episodes from saved live chats or self-play (:func:`import_episodes`). Parsing, validation and
inserts happen in one pass inside one ``BEGIN IMMEDIATE`` transaction, so memory stays bounded
(one batch of rows) whatever the file's size; on any error — a located validation failure
anywhere in the file, an episode id the study already holds, a database error, or the caller
cancelling — the transaction is rolled back and the database is exactly as it was.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from engine.data.errors import DataFormatError
from engine.data.model import Episode
from engine.data.stream import open_stream

from .db import Study, StudyError, now, open_study, write_tx

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]
BATCH_EPISODES = 2000

_SQL = {
    "episodes": "INSERT INTO episodes (id, source, main_name, main_job, partners, meta, import_id) VALUES (?,?,?,?,?,?,?)",
    "sessions": "INSERT INTO sessions (episode_id, idx, partner_name, partner_job, event, date) VALUES (?,?,?,?,?,?)",
    "turns": "INSERT INTO turns (episode_id, turn_id, session_idx, position, speaker, text) VALUES (?,?,?,?,?,?)",
    "memories": "INSERT INTO memories (episode_id, memory_id, owner, about, text, session_idx, source_turns)"
                " VALUES (?,?,?,?,?,?,?)",
    "memory_links": "INSERT INTO memory_links (episode_id, src, dst, kind) VALUES (?,?,?,?)",
    "memory_tags": "INSERT INTO memory_tags (episode_id, turn_id, memory_id) VALUES (?,?,?)",
}


class ImportCancelled(StudyError):
    """The caller cancelled an import; nothing was written."""


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


_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode  # one encoder: json.dumps(**kw) builds one per call


def _json(value, file, record, field) -> str:
    if not value:
        return "{}" if isinstance(value, dict) else "[]"
    try:
        return _ENCODE(value)
    except ValueError as e:  # NaN/Infinity would be written as non-standard JSON
        raise DataFormatError(file, record, field, f"cannot be stored as standard JSON ({e})") from None


def _add_rows(rows: dict[str, list[tuple]], ep: Episode, import_id: int, file) -> None:
    eid = ep.id
    rows["episodes"].append((eid, ep.source, ep.main.name, ep.main.job,
                             _ENCODE([{"name": p.name, "job": p.job} for p in ep.partners]),
                             _json(ep.meta, file, eid, "meta"), import_id))
    sessions, turns, tags = rows["sessions"], rows["turns"], rows["memory_tags"]
    for s in ep.sessions:
        sessions.append((eid, s.index, s.partner.name, s.partner.job, s.event, s.date))
        for pos, t in enumerate(s.turns):
            turns.append((eid, t.id, s.index, pos, t.speaker, t.text))
            if t.memory_ids:
                for mid in dict.fromkeys(t.memory_ids):
                    tags.append((eid, t.id, mid))
    mems = rows["memories"]
    for m in ep.memories:
        mems.append((eid, m.id, m.owner, m.about, m.text, m.session, _ENCODE(m.source_turns) if m.source_turns else "[]"))
    links = rows["memory_links"]
    for l in ep.links:
        links.append((eid, l.src, l.dst, l.kind))


def _flush(study: Study, rows: dict[str, list[tuple]], counts: dict[str, int], file) -> None:
    ids = [r[0] for r in rows["episodes"]]
    _check_new(study, file, ids)
    conn = study.conn
    for table, sql in _SQL.items():  # parents before children (foreign keys)
        batch = rows[table]
        if batch:
            conn.executemany(sql, batch)
            counts[table] += len(batch)
            batch.clear()


def import_episodes(study_or_path, episodes: Iterable[Episode], *, file: str = "<memory>",
                    format: str = "memlab", sha256: str = "", progress: Progress | None = None,
                    cancel: Cancel | None = None, total: int | None = None,
                    position: Callable[[], int] | None = None) -> ImportResult:
    """Write episodes (validated, e.g. from a reader or a stream) in one transaction, as they come.

    ``progress(done, total)`` is called after each batch: episodes, or — with ``position`` —
    whatever unit ``position()`` and ``total`` count (bytes read, for files). ``cancel()`` returning
    true stops the import; any error or a cancel leaves the study unchanged.
    """
    if total is None and isinstance(episodes, (list, tuple)):
        total = len(episodes)
    # Millions of small row tuples and episode objects, none in a reference cycle: the cyclic
    # garbage collector would spend most of the import re-scanning them (measured 70 % of row
    # building), so it is paused for the import and restored afterwards.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _import(study_or_path, episodes, file, format, sha256, progress, cancel, total, position)
    finally:
        if gc_was_enabled:
            gc.enable()


def _import(study_or_path, episodes, file, format, sha256, progress, cancel, total, position) -> ImportResult:
    with open_study(study_or_path) as study:
        counts = dict.fromkeys(_SQL, 0)
        rows: dict[str, list[tuple]] = {t: [] for t in _SQL}
        seen: set[str] = set()
        with write_tx(study):
            import_id = study.conn.execute(
                "INSERT INTO imports (file, format, sha256, n_episodes, imported_at) VALUES (?, ?, ?, 0, ?)",
                (str(file), format, "" if callable(sha256) else sha256, now())).lastrowid
            n = 0
            for ep in episodes:
                if ep.id in seen:
                    raise DataFormatError(file, ep.id, "id", "duplicate episode id in this import")
                seen.add(ep.id)
                _add_rows(rows, ep, import_id, file)
                n += 1
                if len(rows["episodes"]) >= BATCH_EPISODES:
                    _flush(study, rows, counts, file)
                    if cancel is not None and cancel():
                        raise ImportCancelled(f"import of {file} cancelled; nothing was written")
                    if progress:
                        progress(position() if position else n, total if total is not None else n)
            if not n:
                raise DataFormatError(file, None, None, "the file holds no episodes")
            _flush(study, rows, counts, file)
            if cancel is not None and cancel():
                raise ImportCancelled(f"import of {file} cancelled; nothing was written")
            study.conn.execute("UPDATE imports SET n_episodes = ?, sha256 = ? WHERE id = ?",
                               (n, sha256() if callable(sha256) else sha256, import_id))
        if progress:
            progress(total if total is not None else n, total if total is not None else n)
        return ImportResult(str(file), format, import_id, n, counts["sessions"], counts["turns"],
                            counts["memories"], counts["memory_links"], counts["memory_tags"])


def _check_new(study: Study, file, ids: list[str]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        row = study.conn.execute(
            f"SELECT e.id, i.file FROM episodes e LEFT JOIN imports i ON i.id = e.import_id WHERE e.id IN ({marks}) LIMIT 1",
            chunk).fetchone()
        if row:
            raise DataFormatError(file, row[0], "id", f"episode {row[0]!r} is already in the study (imported from {row[1]})")


def import_file(study_or_path, path, format: str = "auto", *, progress: Progress | None = None,
                cancel: Cancel | None = None) -> ImportResult:
    """Read, validate and import one file (``memlab``/``convai2``/``locomo``/``auto``), all-or-nothing,
    streaming it (:mod:`engine.data.stream`). ``progress(bytes read, file size)``; ``cancel()``.

    Raises :class:`DataFormatError` (file, record, field) for bad input and :class:`ImportCancelled`
    when cancelled; the study is unchanged then.
    """
    path = Path(path)
    stream = open_stream(path, format)
    return import_episodes(study_or_path, stream, file=str(path), format=stream.format, sha256=lambda: stream.sha256,
                           progress=progress, cancel=cancel, total=stream.total_bytes,
                           position=lambda: stream.bytes_read)
