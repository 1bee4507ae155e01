"""Annotator packages: one annotator's part of a campaign as a small study file, rated offline, merged back.

SQLite must not be shared over a network drive, so an annotator on another machine gets a *package*:
an ordinary study file (same schema, :mod:`annotation.db`) holding only

- the campaign, its criteria (definitions and anchors: the guidelines) and the annotator's own group,
- the annotator's account (PIN included) and membership,
- the items in the annotator's queue, their assignments, and the content of the episodes they show,
- the annotator's own earlier ratings and item flags (so the queue resumes where they stopped),

and a ``package_manifest`` table. Nothing of other annotators or groups is copied (MiSC §5.1: the
groups rate independently, blind to each other), and gold items keep their mark but not the expected
answers. The annotator edition opens the package like any study and rates into it as usual.

:func:`merge_packages` appends the returned ratings to the study:

- **Identity.** The manifest carries the campaign's fingerprint (name, creation time, seed), a hash
  per item over the item and the content it shows, and a hash of the criteria. A package whose
  fingerprint differs is from another study; one whose items or content hash differently from its
  manifest, or from the study's items, was tampered with — both are refused, naming the file.
- **Idempotent.** A rating is identified by (item, criterion, annotator, time, value, seconds, comment);
  ratings the study already holds are skipped, so merging a package twice, or in any order, adds
  nothing more. Ratings are inserted in the order they were made, so "the latest counts" is kept.
- **Append-only.** Only inserts (``origin = 'package'``); every earlier rating stays.
- **All or nothing.** Every package is checked before anything is written; any bad one → an error
  listing each problem and the study is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .accounts import annotator_id
from .campaigns import get_campaign, queue_position
from .content import CONTENT_TABLES
from .db import Study, StudyError, init_study, name_key, now, open_study, write_tx
from .scales import parse_value

PACKAGE_FORMAT = "memlab-package/1"
PACKAGE_SUFFIX = ".memlab"
MANIFEST_TABLE = "package_manifest"

# Content rows hashed per episode, with the columns that identify their order.
_CONTENT_ORDER = {
    "episodes": "id", "sessions": "idx", "turns": "session_idx, position, turn_id",
    "memories": "memory_id", "memory_links": "src, dst", "memory_tags": "turn_id, memory_id",
}
_EPISODE_KEY = {"episodes": "id"}  # the other content tables name their episode ``episode_id``


@dataclass
class PackageInfo:
    """What a package file says about itself (its manifest)."""

    path: Path
    format: str
    campaign: str
    fingerprint: str
    annotator: str
    group: str
    item_hashes: dict[str, str]
    criteria_hash: str
    created_at: str
    source: str


@dataclass
class MergeReport:
    """Per package: whose ratings, how many were new, how many the study already held."""

    file: str
    annotator: str
    group: str
    added: int
    already: int
    flags_added: int = 0
    items: int = 0

    def __str__(self) -> str:
        return (f"{self.annotator} (group {self.group}): {self.added} rating(s) added, {self.already} already in the "
                f"study" + (f", {self.flags_added} flag(s) added" if self.flags_added else "") + f" — {self.file}")


@dataclass
class _Checked:
    info: PackageInfo
    ratings: list[dict] = field(default_factory=list)   # package ratings by item key / criterion name
    flags: list[dict] = field(default_factory=list)


# --- hashes ---------------------------------------------------------------------------------

def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def campaign_fingerprint(study: Study, campaign_id: int) -> str:
    """Who the campaign is: its name, creation time (microseconds) and seed — differs between studies."""
    row = study.conn.execute("SELECT name, created_at, seed, preset FROM campaigns WHERE id = ?",
                             (campaign_id,)).fetchone()
    return _digest(list(row))


def _episode_hashes(study: Study, episode_ids) -> dict[str, str]:
    out = {}
    for eid in sorted(set(episode_ids)):
        parts = []
        for table in CONTENT_TABLES:
            col = _EPISODE_KEY.get(table, "episode_id")
            rows = study.query(f"SELECT * FROM {table} WHERE {col} = ? ORDER BY {_CONTENT_ORDER[table]}", (eid,))
            for r in rows:
                r.pop("import_id", None)  # where it was imported from is not what the item shows
            parts.append(rows)
        out[eid] = _digest(parts)
    return out


def item_hashes(study: Study, campaign_id: int, keys=None) -> dict[str, str]:
    """``{item key: hash}`` over each item (target, episode, reference, gold mark) and its episode's content."""
    rows = study.query("SELECT key, target, episode_id, ref, gold IS NOT NULL AS gold FROM items WHERE campaign_id = ?",
                       (campaign_id,))
    if keys is not None:
        wanted = set(keys)
        rows = [r for r in rows if r["key"] in wanted]
    episodes = _episode_hashes(study, (r["episode_id"] for r in rows))
    return {r["key"]: _digest([r["key"], r["target"], r["episode_id"], r["ref"], bool(r["gold"]),
                               episodes[r["episode_id"]]]) for r in rows}


def criteria_hash(study: Study, campaign_id: int) -> str:
    return _digest(study.query("SELECT name, label, scale, target, definition, anchors, position FROM criteria"
                               " WHERE campaign_id = ? ORDER BY position", (campaign_id,)))


# --- export ---------------------------------------------------------------------------------

def _copy(dst: Study, table: str, rows: list[dict]) -> None:
    if rows:
        dst.db[table].insert_all(rows, batch_size=1000)


def annotator_campaign(study: Study, annotator: str) -> str:
    """The one campaign ``annotator`` is a member of (an error listing them when there are several)."""
    aid = annotator_id(study, annotator)
    names = [r["name"] for r in study.query("SELECT c.name FROM members m JOIN campaigns c ON c.id = m.campaign_id"
                                            " WHERE m.annotator_id = ? ORDER BY c.id", (aid,))]
    if len(names) != 1:
        raise StudyError(f"annotator {annotator!r} is in " + (f"campaigns {', '.join(map(repr, names))}: name one with --campaign"
                                                              if names else "no campaign"))
    return names[0]


def package_annotator(study_or_path, campaign: str | None, annotator: str, out, *,
                      overwrite: bool = False) -> PackageInfo:
    """Write ``annotator``'s package for ``campaign`` (``None``: their only campaign) to ``out``.

    The file is built beside ``out`` and moved into place when complete, so a failed export never
    leaves half a package. Returns the package's manifest."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise StudyError(f"{out} already exists; choose another file name")
    with open_study(study_or_path) as study:
        campaign = campaign or annotator_campaign(study, annotator)
        camp = get_campaign(study, campaign)
        if camp.closed_at is not None:
            raise StudyError(f"campaign {campaign!r} is closed: rating has ended (reopen it to export packages)")
        aid = annotator_id(study, annotator)
        member = study.query("SELECT * FROM members WHERE annotator_id = ? AND campaign_id = ?", (aid, camp.id))
        if not member:
            raise StudyError(f"annotator {annotator!r} is not in campaign {campaign!r}; add them to a group first")
        gid = member[0]["group_id"]
        account = study.query("SELECT * FROM annotators WHERE id = ?", (aid,))
        assignments = study.query("SELECT * FROM assignments WHERE campaign_id = ? AND annotator_id = ?", (camp.id, aid))
        if not assignments:
            raise StudyError(f"annotator {account[0]['name']!r} has no items to rate in campaign {campaign!r}")
        item_ids = {a["item_id"] for a in assignments}
        items = [r for r in study.query("SELECT * FROM items WHERE campaign_id = ? ORDER BY id", (camp.id,))
                 if r["id"] in item_ids]
        for r in items:
            if r["gold"] is not None:
                r["gold"] = "{}"  # still a gold item (every annotator gets it), but not its expected answers
        episodes = sorted({r["episode_id"] for r in items})
        marks = ",".join("?" * len(episodes))
        content = {}
        for table in CONTENT_TABLES:
            col = _EPISODE_KEY.get(table, "episode_id")
            rows = study.query(f"SELECT * FROM {table} WHERE {col} IN ({marks}) ORDER BY rowid", episodes)
            if table == "episodes":
                for r in rows:
                    r["import_id"] = None
            content[table] = rows
        ratings = study.query("SELECT * FROM ratings WHERE campaign_id = ? AND annotator_id = ? ORDER BY id",
                              (camp.id, aid))
        flags = [f for f in study.query("SELECT * FROM item_flags WHERE annotator_id = ? ORDER BY id", (aid,))
                 if f["item_id"] in item_ids]
        info = PackageInfo(out, PACKAGE_FORMAT, camp.name, campaign_fingerprint(study, camp.id), account[0]["name"],
                           study.one("SELECT name FROM groups WHERE id = ?", (gid,)),
                           item_hashes(study, camp.id, [r["key"] for r in items]), criteria_hash(study, camp.id),
                           now(), Path(study.path).name)
        campaign_row = study.query("SELECT * FROM campaigns WHERE id = ?", (camp.id,))
        criteria = study.query("SELECT * FROM criteria WHERE campaign_id = ?", (camp.id,))
        group = study.query("SELECT * FROM groups WHERE id = ?", (gid,))

    tmp = out.with_name(f".{out.name}.part{os.getpid()}")
    _remove(tmp)
    try:
        with init_study(tmp) as pkg:
            with write_tx(pkg):
                for table in CONTENT_TABLES:
                    _copy(pkg, table, content[table])
                _copy(pkg, "campaigns", campaign_row)
                _copy(pkg, "criteria", criteria)
                _copy(pkg, "groups", group)
                _copy(pkg, "annotators", account)
                _copy(pkg, "members", member)
                _copy(pkg, "items", items)
                _copy(pkg, "assignments", assignments)
                _copy(pkg, "ratings", ratings)
                _copy(pkg, "item_flags", flags)
                pkg.conn.execute(f"CREATE TABLE {MANIFEST_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                pkg.conn.executemany(f"INSERT INTO {MANIFEST_TABLE} VALUES (?, ?)", _manifest_rows(info))
        _remove(out)
        os.replace(tmp, out)
    finally:
        _remove(tmp)
    return info


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if p.exists():
            p.unlink()


def _manifest_rows(info: PackageInfo) -> list[tuple[str, str]]:
    return [("format", info.format), ("campaign", info.campaign), ("fingerprint", info.fingerprint),
            ("annotator", info.annotator), ("group", info.group),
            ("item_hashes", json.dumps(info.item_hashes, sort_keys=True)), ("criteria_hash", info.criteria_hash),
            ("created_at", info.created_at), ("source", info.source)]


def read_package(pkg: Study) -> PackageInfo:
    """The manifest of an open package; a study file without one is refused."""
    if MANIFEST_TABLE not in pkg.db.table_names():
        raise StudyError(f"{pkg.path} is a study, not an annotator package (export one with `memlab study package`)")
    m = dict(pkg.conn.execute(f"SELECT key, value FROM {MANIFEST_TABLE}").fetchall())
    try:
        if m["format"] != PACKAGE_FORMAT:
            raise StudyError(f"{pkg.path}: package format {m['format']!r}; this MemLab reads {PACKAGE_FORMAT}")
        return PackageInfo(pkg.path, m["format"], m["campaign"], m["fingerprint"], m["annotator"], m["group"],
                           json.loads(m["item_hashes"]), m["criteria_hash"], m["created_at"], m["source"])
    except (KeyError, ValueError) as e:
        raise StudyError(f"{pkg.path}: damaged package manifest ({e})") from None


def package_info(path) -> PackageInfo:
    with open_study(path) as pkg:
        return read_package(pkg)


def is_package(path) -> bool:
    """True when ``path`` is an annotator package (the annotator edition says so when it opens one)."""
    try:
        package_info(path)
        return True
    except StudyError:
        return False


# --- merge ----------------------------------------------------------------------------------

def _check(study: Study, path) -> tuple[_Checked | None, list[str]]:
    """Everything that must hold before a package's ratings may enter the study."""
    problems: list[str] = []
    try:
        pkg = open_study(path)
    except StudyError as e:
        return None, [str(e)]
    with pkg:
        try:
            info = read_package(pkg)
        except StudyError as e:
            return None, [str(e)]
        campaigns = study.query("SELECT id FROM campaigns WHERE name = ?", (info.campaign,))
        if not campaigns or campaign_fingerprint(study, campaigns[0]["id"]) != info.fingerprint:
            return None, [f"{path}: this package is from another study (campaign {info.campaign!r} "
                          f"of {info.source!r}), not from {study.path.name}"]
        cid = campaigns[0]["id"]
        pcid = pkg.one("SELECT id FROM campaigns WHERE name = ?", (info.campaign,))
        if pcid is None or campaign_fingerprint(pkg, pcid) != info.fingerprint:
            return None, [f"{path}: the package's campaign does not match its manifest (tampered package)"]
        got = item_hashes(pkg, pcid)
        if got != info.item_hashes:
            changed = sorted(set(got) ^ set(info.item_hashes) | {k for k in got if info.item_hashes.get(k) not in (None, got[k])})
            problems.append(f"{path}: the package's item set was changed after export (tampered): "
                            f"{', '.join(changed[:5])}{' …' if len(changed) > 5 else ''}")
        mine = item_hashes(study, cid, info.item_hashes)
        differ = sorted(k for k, h in info.item_hashes.items() if mine.get(k) != h)
        if differ:
            problems.append(f"{path}: {len(differ)} item(s) differ from the study's ({', '.join(differ[:5])}"
                            f"{' …' if len(differ) > 5 else ''}): the package's item set was tampered with")
        if criteria_hash(pkg, pcid) != info.criteria_hash or criteria_hash(study, cid) != info.criteria_hash:
            problems.append(f"{path}: the criteria differ from the study's campaign {info.campaign!r}")
        member = study.query("SELECT g.name AS grp FROM members m JOIN annotators a ON a.id = m.annotator_id"
                             " JOIN groups g ON g.id = m.group_id WHERE a.name_key = ? AND m.campaign_id = ?",
                             (name_key(info.annotator), cid))
        if not member:
            problems.append(f"{path}: annotator {info.annotator!r} is not in campaign {info.campaign!r} of this study")
        elif member[0]["grp"] != info.group:
            problems.append(f"{path}: annotator {info.annotator!r} rates in group {member[0]['grp']!r} here, "
                            f"the package says {info.group!r}")
        scales = {r["name"]: (r["scale"], r["target"]) for r in
                  pkg.query("SELECT name, scale, target FROM criteria WHERE campaign_id = ?", (pcid,))}
        ratings = pkg.query(
            "SELECT r.id, i.key AS item, i.target, c.name AS criterion, a.name_key, r.value, r.seconds, r.created_at,"
            " r.comment FROM ratings r JOIN items i ON i.id = r.item_id JOIN criteria c ON c.id = r.criterion_id"
            " JOIN annotators a ON a.id = r.annotator_id WHERE r.campaign_id = ? ORDER BY r.id", (pcid,))
        bad = 0
        for r in ratings:
            where = f"{path}: rating {r['id']} (item {r['item']!r}, criterion {r['criterion']!r})"
            if r["name_key"] != name_key(info.annotator):
                problems.append(f"{where}: made by another annotator than the package's {info.annotator!r}")
                bad += 1
            elif r["item"] not in info.item_hashes:
                problems.append(f"{where}: the item is not in the package's manifest")
                bad += 1
            elif scales.get(r["criterion"], (None, None))[1] != r["target"]:
                problems.append(f"{where}: the criterion does not rate {r['target']}s")
                bad += 1
            else:
                try:
                    if parse_value(scales[r["criterion"]][0], r["value"]) != r["value"]:
                        raise StudyError(f"value {r['value']!r}")
                except StudyError as e:
                    problems.append(f"{where}: field value: {e}")
                    bad += 1
            if bad >= 20:
                problems.append(f"{path}: … more bad ratings not listed")
                break
        flags = pkg.query("SELECT f.id, i.key AS item, f.note, f.created_at FROM item_flags f"
                          " JOIN items i ON i.id = f.item_id WHERE i.campaign_id = ? ORDER BY f.id", (pcid,))
        return _Checked(info, ratings, flags), problems


def merge_packages(study_or_path, paths, *, progress: Callable[[int, int], None] | None = None) -> list[MergeReport]:
    """Append the ratings (and item flags) of annotator packages to the study; see the module docstring.

    Returns one :class:`MergeReport` per package, in the order given. Raises :class:`StudyError`
    listing every problem, with nothing written, when any package is refused."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise StudyError("no package files given")
    with open_study(study_or_path) as study:
        checked, problems = [], []
        for p in paths:
            c, errs = _check(study, p)
            problems += errs
            checked.append(c)
        if problems:
            raise StudyError("nothing merged:\n  " + "\n  ".join(problems))
        reports = []
        for done, c in enumerate(checked, 1):
            reports.append(_append(study, c))
            if progress:
                progress(done, len(checked))
        return reports


def _append(study: Study, c: _Checked) -> MergeReport:
    info = c.info
    with write_tx(study):
        camp = study.conn.execute("SELECT id FROM campaigns WHERE name = ?", (info.campaign,)).fetchone()[0]
        aid = annotator_id(study, info.annotator)
        gid, seed = study.conn.execute("SELECT group_id, seed FROM members WHERE annotator_id = ? AND campaign_id = ?",
                                       (aid, camp)).fetchone()
        items = {r["key"]: r["id"] for r in study.query("SELECT id, key FROM items WHERE campaign_id = ?", (camp,))}
        crit = {r["name"]: r["id"] for r in study.query("SELECT id, name FROM criteria WHERE campaign_id = ?", (camp,))}
        have = {(r["item_id"], r["criterion_id"], r["created_at"], r["value"], r["seconds"], r["comment"])
                for r in study.query("SELECT item_id, criterion_id, created_at, value, seconds, comment FROM ratings"
                                     " WHERE campaign_id = ? AND annotator_id = ?", (camp, aid))}
        new = []
        for r in c.ratings:
            key = (items[r["item"]], crit[r["criterion"]], r["created_at"], r["value"], r["seconds"], r["comment"])
            if key not in have:
                have.add(key)
                new.append(key)
        study.conn.executemany(
            "INSERT INTO ratings (campaign_id, item_id, criterion_id, annotator_id, group_id, value, seconds,"
            " created_at, origin, comment) VALUES (?,?,?,?,?,?,?,?, 'package', ?)",
            [(camp, i, cr, aid, gid, v, s, t, com) for i, cr, t, v, s, com in new])
        stamp = now()
        study.db["assignments"].insert_all(   # a rated item stays in the annotator's queue (rated ones never move)
            ({"item_id": i, "annotator_id": aid, "campaign_id": camp, "group_id": gid,
              "position": queue_position(seed, i), "assigned_at": stamp} for i in {k[0] for k in new}), ignore=True)
        flags_have = {(r["item_id"], r["created_at"], r["note"]) for r in
                      study.query("SELECT item_id, created_at, note FROM item_flags WHERE annotator_id = ?", (aid,))}
        new_flags = [(items[f["item"]], f["created_at"], f["note"]) for f in c.flags
                     if (items[f["item"]], f["created_at"], f["note"]) not in flags_have]
        study.conn.executemany("INSERT INTO item_flags (item_id, annotator_id, note, created_at) VALUES (?,?,?,?)",
                               [(i, aid, n, t) for i, t, n in new_flags])
    return MergeReport(str(info.path), info.annotator, info.group, len(new), len(c.ratings) - len(new),
                       len(new_flags), len(info.item_hashes))
