"""Ratings: append-only, one transaction per rating; bulk CSV import all-or-nothing; QC reviews.

An edit is a new row; the latest row per (item, criterion, annotator) counts (view
``latest_ratings``). Every row records who, when (UTC, microseconds) and the seconds spent.
:func:`rate` returns only after its transaction is committed (WAL, ``synchronous=FULL``), so a
rating whose call returned survives a killed process.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from .accounts import ensure_annotator
from .campaigns import Campaign, _join, get_campaign, queue_position
from .db import Study, StudyError, name_key, now, open_study, write_tx
from .scales import format_value, parse_value  # noqa: F401  (format_value re-exported for callers)

CSV_COLUMNS = ("item", "criterion", "annotator", "group", "value")


@dataclass
class Rating:
    id: int
    campaign: str
    item_key: str
    criterion: str
    annotator: str
    group: str
    value: int
    seconds: float | None
    created_at: str


def _context(study: Study, campaign: str, annotator: str, item, criterion: str):
    camp = get_campaign(study, campaign)
    aid = study.one("SELECT id FROM annotators WHERE name_key = ?", (name_key(annotator),))
    if aid is None:
        raise StudyError(f"no annotator {annotator!r}; add them with `memlab study annotator add`")
    gid = study.one("SELECT group_id FROM members WHERE annotator_id = ? AND campaign_id = ?", (aid, camp.id))
    if gid is None:
        raise StudyError(f"annotator {annotator!r} is not in campaign {campaign!r}")
    col = "id" if isinstance(item, int) else "key"
    row = study.conn.execute(f"SELECT id, key, target FROM items WHERE campaign_id = ? AND {col} = ?",
                             (camp.id, item)).fetchone()
    if row is None:
        raise StudyError(f"campaign {campaign!r} has no item {item!r}")
    crit = next((c for c in camp.criteria if c.name == criterion), None)
    if crit is None:
        raise StudyError(f"campaign {campaign!r} has no criterion {criterion!r}")
    if crit.target != row[2]:
        raise StudyError(f"criterion {criterion!r} rates {crit.target}s; item {row[1]!r} is a {row[2]}")
    cid = study.one("SELECT id FROM criteria WHERE campaign_id = ? AND name = ?", (camp.id, criterion))
    return camp, aid, gid, row[0], row[1], crit, cid


def rate(study_or_path, campaign: str, annotator: str, item, criterion: str, value, *,
         seconds: float | None = None, comment: str = "") -> Rating:
    """Record one rating in its own committed transaction (an edit is simply another call).

    ``item`` is an item id (int) or key. The item must be in the annotator's queue (blind protocol).
    """
    with open_study(study_or_path) as study:
        camp, aid, gid, item_id, key, crit, cid = _context(study, campaign, annotator, item, criterion)
        if study.one("SELECT closed_at FROM campaigns WHERE id = ?", (camp.id,)) is not None:
            raise StudyError(f"campaign {campaign!r} is closed: rating has ended (the owner can reopen it)")
        v = parse_value(crit.scale, value)
        if seconds is not None and not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise StudyError(f"seconds spent must be ≥ 0, got {seconds!r}")
        if study.one("SELECT 1 FROM assignments WHERE item_id = ? AND annotator_id = ?", (item_id, aid)) is None:
            raise StudyError(f"item {key!r} is not in {annotator!r}'s queue")
        stamp = now()
        with write_tx(study):
            rid = study.conn.execute(
                "INSERT INTO ratings (campaign_id, item_id, criterion_id, annotator_id, group_id, value, seconds,"
                " created_at, origin, comment) VALUES (?,?,?,?,?,?,?,?, 'queue', ?)",
                (camp.id, item_id, cid, aid, gid, v, seconds, stamp, comment)).lastrowid
        group = study.one("SELECT name FROM groups WHERE id = ?", (gid,))
        return Rating(rid, camp.name, key, criterion, annotator, group, v, seconds, stamp)


@dataclass
class CsvProblem:
    line: int
    message: str

    def __str__(self):
        return f"line {self.line}: {self.message}"


class RatingsCsvError(StudyError):
    """Bad rows in a ratings CSV; ``problems`` lists each with its line number."""

    def __init__(self, path, problems: list[CsvProblem]):
        self.path, self.problems = str(path), problems
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{path}: {len(problems)} bad row(s):\n  {shown}{more}")


def read_csv_rows(path) -> list[tuple[int, dict]]:
    """Rows of a ratings CSV as ``(line number, row)``; the header must have :data:`CSV_COLUMNS`."""
    try:
        text = open(path, "rb").read().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RatingsCsvError(path, [CsvProblem(1, f"not UTF-8 text (byte {e.start})")]) from None
    except OSError as e:
        raise StudyError(f"cannot read {path}: {e.strerror or e}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise RatingsCsvError(path, [CsvProblem(1, f"missing column(s) {', '.join(missing)}; "
                                                   f"expected {','.join(CSV_COLUMNS)}")])
    reader.fieldnames = header
    rows = []
    try:
        for row in reader:
            if row.get(None):
                rows.append((reader.line_num, {"_error": "more fields than the header"}))
                continue
            clean = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if not any(clean.values()):
                continue
            rows.append((reader.line_num, clean))
    except csv.Error as e:
        raise RatingsCsvError(path, [CsvProblem(reader.line_num, f"malformed CSV: {e}")]) from None
    return rows


def import_ratings_csv(study_or_path, campaign: str, path, *, progress: Callable[[int, int], None] | None = None) -> int:
    """Import ratings collected elsewhere (columns ``item,criterion,annotator,group,value`` and
    optional ``seconds``, ``created_at``). Every row is checked first; any bad row → nothing is
    written and :class:`RatingsCsvError` lists the bad lines. Unknown annotators are created in the
    row's group. Returns the number of ratings added."""
    with open_study(study_or_path) as study:
        camp = get_campaign(study, campaign)
        rows = read_csv_rows(path)
        crit = {c.name: c for c in camp.criteria}
        crit_ids = {r["name"]: r["id"] for r in study.query("SELECT id, name FROM criteria WHERE campaign_id = ?", (camp.id,))}
        items = {r["key"]: (r["id"], r["target"]) for r in study.query("SELECT id, key, target FROM items WHERE campaign_id = ?", (camp.id,))}
        by_id = {str(i): (i, t) for i, t in items.values()}
        groups = {r["name"]: r["id"] for r in study.query("SELECT id, name FROM groups WHERE campaign_id = ?", (camp.id,))}
        member_group = {r["name_key"]: r["group"] for r in study.query(
            "SELECT a.name_key, g.name AS 'group' FROM members m JOIN annotators a ON a.id = m.annotator_id "
            "JOIN groups g ON g.id = m.group_id WHERE m.campaign_id = ?", (camp.id,))}
        problems: list[CsvProblem] = []
        clean = []
        for line, row in rows:
            if "_error" in row:
                problems.append(CsvProblem(line, row["_error"]))
                continue
            item = items.get(row["item"]) or by_id.get(row["item"])
            if item is None:
                problems.append(CsvProblem(line, f"unknown item {row['item']!r} in campaign {campaign!r}"))
                continue
            c = crit.get(row["criterion"].lower())
            if c is None:
                problems.append(CsvProblem(line, f"unknown criterion {row['criterion']!r} (campaign has {', '.join(crit)})"))
                continue
            if c.target != item[1]:
                problems.append(CsvProblem(line, f"criterion {c.name!r} rates {c.target}s; item {row['item']!r} is a {item[1]}"))
                continue
            if not row["annotator"]:
                problems.append(CsvProblem(line, "empty annotator"))
                continue
            if row["group"] not in groups:
                problems.append(CsvProblem(line, f"unknown group {row['group']!r} (campaign has {', '.join(groups)})"))
                continue
            known = member_group.setdefault(name_key(row["annotator"]), row["group"])
            if known != row["group"]:
                problems.append(CsvProblem(line, f"annotator {row['annotator']!r} is in group {known!r}, not {row['group']!r}"))
                continue
            try:
                value = parse_value(c.scale, row["value"])
            except StudyError as e:
                problems.append(CsvProblem(line, str(e)))
                continue
            seconds = None
            if row.get("seconds"):
                try:
                    seconds = float(row["seconds"])
                    if not (math.isfinite(seconds) and seconds >= 0):
                        raise ValueError
                except ValueError:
                    problems.append(CsvProblem(line, f"seconds must be a number ≥ 0, got {row['seconds']!r}"))
                    continue
            created = row.get("created_at") or None
            if created is not None:
                try:
                    stamp_dt = datetime.fromisoformat(created)
                except ValueError:
                    problems.append(CsvProblem(line, f"created_at must be an ISO 8601 date/time, got {created!r}"))
                    continue
                if stamp_dt.tzinfo is None:
                    stamp_dt = stamp_dt.replace(tzinfo=timezone.utc)
                created = stamp_dt.astimezone(timezone.utc).isoformat(timespec="microseconds")
            clean.append((item[0], crit_ids[c.name], row["annotator"], groups[row["group"]], row["group"], value,
                          seconds, created))
        if problems:
            raise RatingsCsvError(path, problems)
        if not clean:
            raise RatingsCsvError(path, [CsvProblem(1, "no ratings in the file")])
        total = len(clean)
        with write_tx(study):
            ids = {}
            for name, gname in {(r[2], r[4]) for r in clean}:  # "Ann" and "ann" are one account
                ids[name] = ensure_annotator(study, name)
                _join(study, ids[name], camp.id, gname)
            stamp = now()
            batch = []
            for done, (item_id, cid, name, gid, _g, value, seconds, created) in enumerate(clean, 1):
                batch.append((camp.id, item_id, cid, ids[name], gid, value, seconds, created or stamp))
                if len(batch) >= 5000 or done == total:
                    study.conn.executemany(
                        "INSERT INTO ratings (campaign_id, item_id, criterion_id, annotator_id, group_id, value,"
                        " seconds, created_at, origin) VALUES (?,?,?,?,?,?,?,?, 'import')", batch)
                    batch = []
                    if progress:
                        progress(done, total)
            seeds = {r["annotator_id"]: r["seed"] for r in study.query(
                "SELECT annotator_id, seed FROM members WHERE campaign_id = ?", (camp.id,))}
            study.db["assignments"].insert_all(
                ({"item_id": i, "annotator_id": ids[n], "campaign_id": camp.id, "group_id": g,
                  "position": queue_position(seeds[ids[n]], i), "assigned_at": stamp}
                 for i, _c, n, g, *_ in clean), ignore=True)
        return total


def latest_ratings(study_or_path, campaign: str, *, include_gold: bool = True) -> list[dict]:
    """The rating that counts per (item, criterion, annotator), with names resolved."""
    with open_study(study_or_path) as study:
        camp = get_campaign(study, campaign)
        gold = "" if include_gold else "AND i.gold IS NULL"
        return study.query(
            "SELECT r.id, i.key AS item, c.name AS criterion, c.scale, a.name AS annotator, g.name AS 'group',"
            " r.value, r.seconds, r.created_at FROM latest_ratings r JOIN items i ON i.id = r.item_id"
            " JOIN criteria c ON c.id = r.criterion_id JOIN annotators a ON a.id = r.annotator_id"
            f" JOIN groups g ON g.id = r.group_id WHERE r.campaign_id = ? {gold} ORDER BY r.id", (camp.id,))


def all_ratings(study: Study, camp: Campaign) -> list[dict]:
    """Every rating row (superseded ones too), with ``latest`` = 1 on the one that counts."""
    return study.query(
        "SELECT r.id, i.key AS item, c.name AS criterion, c.scale, a.name AS annotator, g.name AS 'group',"
        " r.value, r.seconds, r.created_at, r.origin, r.comment, i.gold IS NOT NULL AS gold,"
        " (r.id IN (SELECT id FROM latest_ratings WHERE campaign_id = ?)) AS latest"
        " FROM ratings r JOIN items i ON i.id = r.item_id JOIN criteria c ON c.id = r.criterion_id"
        " JOIN annotators a ON a.id = r.annotator_id JOIN groups g ON g.id = r.group_id"
        " WHERE r.campaign_id = ? ORDER BY r.id", (camp.id, camp.id))


def add_review(study_or_path, rating_id: int, reviewer: str, verdict: str, note: str = "") -> int:
    """A QC reviewer's verdict (``ok``/``flag``) on one rating (MiSC §5.1 quality control)."""
    if verdict not in ("ok", "flag"):
        raise StudyError(f"verdict must be ok or flag, got {verdict!r}")
    with open_study(study_or_path) as study:
        with write_tx(study):
            if study.one("SELECT 1 FROM ratings WHERE id = ?", (rating_id,)) is None:
                raise StudyError(f"no rating {rating_id}")
            return study.conn.execute("INSERT INTO reviews (rating_id, reviewer, verdict, note, created_at) VALUES (?,?,?,?,?)",
                                      (rating_id, reviewer, verdict, note, now())).lastrowid


def gold_report(study_or_path, campaign: str) -> dict[str, dict]:
    """Per annotator: gold answers given, how many matched the expected answer, accuracy."""
    with open_study(study_or_path) as study:
        camp = get_campaign(study, campaign)
        out: dict[str, dict] = {}
        for r in study.query(
                "SELECT a.name AS annotator, c.name AS criterion, r.value, i.gold FROM latest_ratings r"
                " JOIN items i ON i.id = r.item_id JOIN criteria c ON c.id = r.criterion_id"
                " JOIN annotators a ON a.id = r.annotator_id WHERE r.campaign_id = ? AND i.gold IS NOT NULL",
                (camp.id,)):
            expected = json.loads(r["gold"]).get(r["criterion"])
            if expected is None:
                continue
            s = out.setdefault(r["annotator"], {"answered": 0, "correct": 0})
            s["answered"] += 1
            s["correct"] += int(expected == r["value"])
        for s in out.values():
            s["accuracy"] = s["correct"] / s["answered"]
        return out
