"""The study database: one SQLite file per study (sqlite-utils), WAL, foreign keys on.

docs/architecture.md "Study schema": content tables (episodes, sessions, turns, memories, memory_links,
memory_tags) hold what items show; campaigns, criteria, groups, annotators, members, items,
assignments, ratings (append-only: an edit is a new row, the latest row counts) and reviews (QC)
hold the study. ``schema_version`` records which forward migrations have run.

Concurrency and durability: every connection sets ``busy_timeout`` and writes go through
:func:`write_tx`, which starts ``BEGIN IMMEDIATE`` (so two writers queue instead of deadlocking)
and retries on ``database is locked`` until :data:`LOCK_PATIENCE_S` passes; WAL with
``synchronous=FULL`` makes a committed rating survive a killed process or a power cut.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_MS = 5000
LOCK_PATIENCE_S = 120.0


class StudyError(ValueError):
    """A request the study cannot satisfy (unknown campaign, bad value…); the message says why."""


def now() -> str:
    """UTC timestamp with microseconds, ISO 8601 (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# --- schema ---------------------------------------------------------------------------------
# Each entry is one forward migration; never edit a released one, append a new one.
MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE imports (
        id INTEGER PRIMARY KEY, file TEXT NOT NULL, format TEXT NOT NULL, sha256 TEXT NOT NULL,
        n_episodes INTEGER NOT NULL, imported_at TEXT NOT NULL);
    CREATE TABLE episodes (
        id TEXT PRIMARY KEY, source TEXT NOT NULL, main_name TEXT NOT NULL, main_job TEXT NOT NULL,
        partners TEXT NOT NULL, meta TEXT NOT NULL,
        import_id INTEGER REFERENCES imports(id));
    CREATE TABLE sessions (
        episode_id TEXT NOT NULL REFERENCES episodes(id), idx INTEGER NOT NULL,
        partner_name TEXT NOT NULL, partner_job TEXT NOT NULL, event TEXT NOT NULL, date TEXT,
        PRIMARY KEY (episode_id, idx));
    CREATE TABLE turns (
        episode_id TEXT NOT NULL, turn_id TEXT NOT NULL, session_idx INTEGER NOT NULL,
        position INTEGER NOT NULL, speaker TEXT NOT NULL, text TEXT NOT NULL,
        PRIMARY KEY (episode_id, turn_id),
        FOREIGN KEY (episode_id, session_idx) REFERENCES sessions(episode_id, idx));
    CREATE TABLE memories (
        episode_id TEXT NOT NULL, memory_id TEXT NOT NULL, owner TEXT NOT NULL, about TEXT NOT NULL,
        text TEXT NOT NULL, session_idx INTEGER NOT NULL, source_turns TEXT NOT NULL,
        PRIMARY KEY (episode_id, memory_id),
        FOREIGN KEY (episode_id, session_idx) REFERENCES sessions(episode_id, idx));
    CREATE TABLE memory_links (
        episode_id TEXT NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, kind TEXT NOT NULL
            CHECK (kind IN ('related', 'update')),
        PRIMARY KEY (episode_id, src, dst),
        FOREIGN KEY (episode_id, src) REFERENCES memories(episode_id, memory_id),
        FOREIGN KEY (episode_id, dst) REFERENCES memories(episode_id, memory_id));
    CREATE TABLE memory_tags (
        episode_id TEXT NOT NULL, turn_id TEXT NOT NULL, memory_id TEXT NOT NULL,
        PRIMARY KEY (episode_id, turn_id, memory_id),
        FOREIGN KEY (episode_id, turn_id) REFERENCES turns(episode_id, turn_id),
        FOREIGN KEY (episode_id, memory_id) REFERENCES memories(episode_id, memory_id));

    CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, preset TEXT NOT NULL, unit TEXT NOT NULL,
        overlap TEXT NOT NULL, seed INTEGER NOT NULL, created_at TEXT NOT NULL, description TEXT NOT NULL);
    CREATE TABLE criteria (
        id INTEGER PRIMARY KEY, campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        name TEXT NOT NULL, label TEXT NOT NULL,
        scale TEXT NOT NULL CHECK (scale IN ('likert', 'passfail')),
        target TEXT NOT NULL CHECK (target IN ('episode', 'session', 'memory', 'link', 'tag')),
        definition TEXT NOT NULL, anchors TEXT NOT NULL, position INTEGER NOT NULL,
        UNIQUE (campaign_id, name));
    CREATE TABLE groups (
        id INTEGER PRIMARY KEY, campaign_id INTEGER NOT NULL REFERENCES campaigns(id), name TEXT NOT NULL,
        UNIQUE (campaign_id, name));
    CREATE TABLE annotators (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, default_group TEXT, created_at TEXT NOT NULL);
    CREATE TABLE members (
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        group_id INTEGER NOT NULL REFERENCES groups(id),
        seed INTEGER NOT NULL, joined_at TEXT NOT NULL,
        PRIMARY KEY (annotator_id, campaign_id));
    CREATE TABLE items (
        id INTEGER PRIMARY KEY, campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        key TEXT NOT NULL, target TEXT NOT NULL, episode_id TEXT NOT NULL REFERENCES episodes(id),
        ref TEXT NOT NULL, gold TEXT,
        UNIQUE (campaign_id, key));
    CREATE TABLE assignments (
        item_id INTEGER NOT NULL REFERENCES items(id),
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        group_id INTEGER NOT NULL REFERENCES groups(id),
        position INTEGER NOT NULL, assigned_at TEXT NOT NULL,
        PRIMARY KEY (item_id, annotator_id));
    CREATE INDEX assignments_queue ON assignments(campaign_id, annotator_id, position);
    CREATE TABLE ratings (
        id INTEGER PRIMARY KEY, campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        item_id INTEGER NOT NULL REFERENCES items(id),
        criterion_id INTEGER NOT NULL REFERENCES criteria(id),
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        group_id INTEGER NOT NULL REFERENCES groups(id),
        value INTEGER NOT NULL, seconds REAL, created_at TEXT NOT NULL,
        origin TEXT NOT NULL DEFAULT 'queue', comment TEXT NOT NULL DEFAULT '');
    CREATE INDEX ratings_latest ON ratings(campaign_id, criterion_id, item_id, annotator_id, id);
    CREATE TRIGGER ratings_no_update BEFORE UPDATE ON ratings
        BEGIN SELECT RAISE(ABORT, 'ratings are append-only: add a new rating instead'); END;
    CREATE TRIGGER ratings_no_delete BEFORE DELETE ON ratings
        BEGIN SELECT RAISE(ABORT, 'ratings are append-only: they cannot be deleted'); END;
    CREATE VIEW latest_ratings AS
        SELECT r.* FROM ratings r JOIN (
            SELECT MAX(id) AS id FROM ratings GROUP BY item_id, criterion_id, annotator_id) m
        ON r.id = m.id;
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY, rating_id INTEGER NOT NULL REFERENCES ratings(id),
        reviewer TEXT NOT NULL, verdict TEXT NOT NULL CHECK (verdict IN ('ok', 'flag')),
        note TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
    """,
    # 2: annotator accounts (case-insensitive names, optional PIN, role), closing a campaign,
    #    item flags, compare votes with their transcripts, automatic-evaluation reports
    """
    ALTER TABLE annotators ADD COLUMN name_key TEXT;
    ALTER TABLE annotators ADD COLUMN pin_hash TEXT;
    ALTER TABLE annotators ADD COLUMN role TEXT NOT NULL DEFAULT 'annotator'
        CHECK (role IN ('annotator', 'reviewer'));
    UPDATE annotators SET name_key = lower(trim(name));
    CREATE INDEX annotators_key ON annotators(name_key);
    ALTER TABLE campaigns ADD COLUMN closed_at TEXT;
    CREATE TABLE item_flags (
        id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES items(id),
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        note TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
    CREATE TRIGGER item_flags_no_update BEFORE UPDATE ON item_flags
        BEGIN SELECT RAISE(ABORT, 'flags are append-only'); END;
    CREATE TRIGGER item_flags_no_delete BEFORE DELETE ON item_flags
        BEGIN SELECT RAISE(ABORT, 'flags are append-only'); END;
    CREATE TABLE compare_votes (
        id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, comparison TEXT NOT NULL,
        left_system TEXT NOT NULL, right_system TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('left', 'right', 'tie', 'both_bad')),
        blind INTEGER NOT NULL, voter TEXT NOT NULL DEFAULT '',
        transcript TEXT NOT NULL, partners TEXT NOT NULL, memory TEXT NOT NULL DEFAULT '{}',
        origin TEXT NOT NULL DEFAULT 'compare');
    CREATE INDEX compare_votes_pair ON compare_votes(left_system, right_system);
    CREATE TRIGGER compare_votes_no_update BEFORE UPDATE ON compare_votes
        BEGIN SELECT RAISE(ABORT, 'compare votes are append-only: add a new vote instead'); END;
    CREATE TRIGGER compare_votes_no_delete BEFORE DELETE ON compare_votes
        BEGIN SELECT RAISE(ABORT, 'compare votes are append-only: they cannot be deleted'); END;
    CREATE TABLE eval_reports (
        id INTEGER PRIMARY KEY, created_at TEXT NOT NULL,
        campaign_id INTEGER REFERENCES campaigns(id),
        systems TEXT NOT NULL, data TEXT NOT NULL, payload TEXT NOT NULL);
    CREATE TRIGGER eval_reports_no_update BEFORE UPDATE ON eval_reports
        BEGIN SELECT RAISE(ABORT, 'evaluation reports are append-only: add a new report instead'); END;
    CREATE TRIGGER eval_reports_no_delete BEFORE DELETE ON eval_reports
        BEGIN SELECT RAISE(ABORT, 'evaluation reports are append-only: they cannot be deleted'); END;
    """,
]


def name_key(name: str) -> str:
    """The form two annotator names are compared in: NFKC, case-folded, inner spaces collapsed —
    so "Ann", "ann" and "ＡＮＮ " are one account and a typo in case cannot fork a queue."""
    return " ".join(unicodedata.normalize("NFKC", str(name)).casefold().split())


def _fill_name_keys(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT id, name FROM annotators").fetchall()
    conn.executemany("UPDATE annotators SET name_key = ? WHERE id = ?", [(name_key(n), i) for i, n in rows])


# Python steps run after a migration's SQL, inside the same transaction.
MIGRATION_HOOKS = {2: _fill_name_keys}
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class Study:
    """An open study file. ``db`` is the :class:`sqlite_utils.Database`; close with :meth:`close`."""

    path: Path
    db: sqlite_utils.Database
    _borrowed: int = 0  # how many ``with open_study(this study)`` blocks are open on it

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def query(self, sql: str, params=()) -> list[dict]:
        return list(self.db.query(sql, params))

    def one(self, sql: str, params=()):
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._borrowed:
            self._borrowed -= 1  # lent by open_study(study): the owner closes it
        else:
            self.close()


def _connect(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.isolation_level = None  # we issue BEGIN/COMMIT ourselves
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return sqlite_utils.Database(conn, execute_plugins=False)


def _is_lock_error(e: Exception) -> bool:
    msg = str(e).lower()
    return isinstance(e, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)


def _retry(fn):
    deadline = time.monotonic() + LOCK_PATIENCE_S
    delay = 0.005
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if not _is_lock_error(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.25)


@contextlib.contextmanager
def write_tx(study: Study):
    """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), retried while another writer holds
    the lock; on any exception everything in it is rolled back and the exception re-raised."""
    conn = study.conn
    if conn.in_transaction:
        raise RuntimeError("write_tx does not nest")
    _retry(lambda: conn.execute("BEGIN IMMEDIATE"))
    try:
        yield study
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        _retry(lambda: conn.execute("COMMIT"))
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def schema_version(study: Study) -> int:
    if "schema_version" not in study.db.table_names():
        return 0
    return study.one("SELECT COALESCE(MAX(version), 0) FROM schema_version") or 0


def migrate(study: Study) -> int:
    """Run every forward migration not yet applied, each in its own transaction."""
    with write_tx(study):
        study.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    current = schema_version(study)
    if current > SCHEMA_VERSION:
        raise StudyError(f"{study.path} has schema version {current}; this MemLab knows up to {SCHEMA_VERSION}. Update MemLab.")
    for version in range(current + 1, SCHEMA_VERSION + 1):
        with write_tx(study):
            if schema_version(study) >= version:  # another process migrated meanwhile
                continue
            for statement in _statements(MIGRATIONS[version - 1]):
                study.conn.execute(statement)
            if version in MIGRATION_HOOKS:
                MIGRATION_HOOKS[version](study.conn)
            study.conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, now()))
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (trigger bodies keep their inner ``;``)."""
    out, buf = [], ""
    for line in script.strip().splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def init_study(path) -> Study:
    """Create (or upgrade) a study file and return it open."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    study = Study(path, _connect(path))
    migrate(study)
    return study


def open_study(study_or_path, *, create: bool = False) -> Study:
    """The study to use in ``with open_study(x) as study:`` — every public annotation function's
    first argument goes through here.

    ``x`` is a path (the study is opened, forward-migrated, and closed when the block ends;
    ``create=True`` makes a new one if missing) or an already open :class:`Study` (it is lent to
    the block and stays open afterwards: its owner closes it).
    """
    if isinstance(study_or_path, Study):
        study_or_path._borrowed += 1
        return study_or_path
    path = Path(study_or_path)
    if not path.exists():
        if create:
            return init_study(path)
        raise StudyError(f"no study at {path}; create it with `memlab study init {path}`")
    try:
        study = Study(path, _connect(path))
        names = study.db.table_names()
    except sqlite3.DatabaseError as e:
        raise StudyError(f"{path} is not a MemLab study ({e})") from None
    if "schema_version" not in names and names:
        study.close()
        raise StudyError(f"{path} is an SQLite file but not a MemLab study")
    migrate(study)
    return study


def integrity_check(study: Study) -> str:
    return study.one("PRAGMA integrity_check")
