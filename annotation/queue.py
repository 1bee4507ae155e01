"""An annotator's blind queue: randomised per annotator (seeded), resumable, own ratings only.

The order is the assignment ``position`` (a per-annotator seeded hash, see
:func:`annotation.campaigns.queue_position`); the next item is the first one in that order that
still lacks a rating from this annotator on one of its criteria, so closing the app and coming
back resumes where the annotator stopped. Nothing here reads another annotator's ratings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .campaigns import get_campaign
from .db import Study, StudyError, name_key, open_study


@dataclass
class CriterionView:
    name: str
    label: str
    scale: str
    definition: str
    anchors: dict
    my_value: int | None = None  # this annotator's latest rating, if any


@dataclass
class QueueItem:
    item_id: int
    key: str
    target: str
    position: int          # 1-based place in this annotator's queue
    total: int
    content: dict          # what to show (turns, memories, …); never other people's ratings
    criteria: list[CriterionView] = field(default_factory=list)


@dataclass
class QueueStatus:
    done: int
    total: int

    @property
    def remaining(self) -> int:
        return self.total - self.done


def _member(study: Study, campaign: str, annotator: str):
    camp = get_campaign(study, campaign)
    aid = study.one("SELECT a.id FROM annotators a JOIN members m ON m.annotator_id = a.id"
                    " WHERE a.name_key = ? AND m.campaign_id = ?", (name_key(annotator), camp.id))
    if aid is None:
        raise StudyError(f"annotator {annotator!r} is not in campaign {campaign!r}")
    return camp, aid


_PENDING = """
SELECT s.item_id, i.key, i.target,
       (SELECT COUNT(*) FROM criteria c WHERE c.campaign_id = s.campaign_id AND c.target = i.target) AS n_criteria,
       (SELECT COUNT(DISTINCT r.criterion_id) FROM ratings r
         WHERE r.item_id = s.item_id AND r.annotator_id = s.annotator_id) AS n_rated
FROM assignments s JOIN items i ON i.id = s.item_id
WHERE s.campaign_id = ? AND s.annotator_id = ?
ORDER BY s.position, s.item_id
"""


def queue_status(study_or_path, campaign: str, annotator: str) -> QueueStatus:
    with open_study(study_or_path) as study:
        camp, aid = _member(study, campaign, annotator)
        rows = study.conn.execute(_PENDING, (camp.id, aid)).fetchall()
        return QueueStatus(sum(1 for r in rows if r[4] >= r[3]), len(rows))


def next_item(study_or_path, campaign: str, annotator: str) -> QueueItem | None:
    """The next item this annotator has not finished, or ``None`` when the queue is done."""
    with open_study(study_or_path) as study:
        camp, aid = _member(study, campaign, annotator)
        rows = study.conn.execute(_PENDING, (camp.id, aid)).fetchall()
        for pos, (item_id, key, target, n_crit, n_rated) in enumerate(rows, 1):
            if n_rated < n_crit:
                return _view(study, camp, aid, item_id, key, target, pos, len(rows))
        return None


def queue_items(study_or_path, campaign: str, annotator: str) -> list[tuple[str, bool]]:
    """The whole queue in order as ``(item key, finished)``."""
    with open_study(study_or_path) as study:
        camp, aid = _member(study, campaign, annotator)
        return [(r[1], r[4] >= r[3]) for r in study.conn.execute(_PENDING, (camp.id, aid)).fetchall()]


def _view(study, camp, aid, item_id, key, target, pos, total) -> QueueItem:
    mine = {r["name"]: r["value"] for r in study.query(
        "SELECT c.name, r.value FROM latest_ratings r JOIN criteria c ON c.id = r.criterion_id"
        " WHERE r.item_id = ? AND r.annotator_id = ?", (item_id, aid))}
    crits = [CriterionView(c.name, c.label, c.scale, c.definition, c.anchors, mine.get(c.name))
             for c in camp.criteria if c.target == target]
    return QueueItem(item_id, key, target, pos, total, item_content(study, item_id), crits)


def _turns(study, episode_id, session_idx):
    return study.query("SELECT turn_id AS id, speaker, text FROM turns WHERE episode_id = ? AND session_idx = ?"
                       " ORDER BY position", (episode_id, session_idx))


def _memory(study, episode_id, memory_id):
    rows = study.query("SELECT memory_id AS id, owner, about, text, session_idx AS session, source_turns"
                       " FROM memories WHERE episode_id = ? AND memory_id = ?", (episode_id, memory_id))
    m = rows[0]
    m["source_turns"] = json.loads(m["source_turns"])
    return m


def item_content(study_or_path, item_id: int) -> dict:
    """What an item shows: the episode's speakers plus the session/memory/link/tag it is about."""
    with open_study(study_or_path) as study:
        row = study.query("SELECT target, episode_id, ref FROM items WHERE id = ?", (item_id,))
        if not row:
            raise StudyError(f"no item {item_id}")
        target, ep_id, ref = row[0]["target"], row[0]["episode_id"], json.loads(row[0]["ref"])
        ep = study.query("SELECT id, main_name, main_job, partners FROM episodes WHERE id = ?", (ep_id,))[0]
        out = {"episode": ep_id, "main": {"name": ep["main_name"], "job": ep["main_job"]},
               "partners": json.loads(ep["partners"])}
        sessions = study.query("SELECT idx, partner_name, partner_job, event, date FROM sessions WHERE episode_id = ?"
                               " ORDER BY idx", (ep_id,))
        mems = study.query("SELECT memory_id AS id, about, text, session_idx AS session FROM memories"
                           " WHERE episode_id = ? ORDER BY rowid", (ep_id,))
        if target == "episode":
            out["sessions"] = [dict(s, turns=_turns(study, ep_id, s["idx"])) for s in sessions]
            out["memories"] = mems
        elif target == "session":
            s = sessions[ref["session"]]
            out["session"] = dict(s, turns=_turns(study, ep_id, s["idx"]))
            out["memories"] = [m for m in mems if m["session"] <= s["idx"]]
        elif target == "memory":
            m = _memory(study, ep_id, ref["memory"])
            out["memory"] = m
            out["session"] = dict(sessions[m["session"]], turns=_turns(study, ep_id, m["session"]))
        elif target == "link":
            out["newer"] = _memory(study, ep_id, ref["src"])
            out["older"] = _memory(study, ep_id, ref["dst"])
            out["kind"] = study.one("SELECT kind FROM memory_links WHERE episode_id = ? AND src = ? AND dst = ?",
                                    (ep_id, ref["src"], ref["dst"]))
        else:
            out["utterance"] = study.query("SELECT turn_id AS id, speaker, text, session_idx AS session FROM turns"
                                           " WHERE episode_id = ? AND turn_id = ?", (ep_id, ref["turn"]))[0]
            out["memory"] = _memory(study, ep_id, ref["memory"])
        return out


def queue_item_at(study_or_path, campaign: str, annotator: str, index: int) -> QueueItem:
    """The annotator's queue item at 0-based ``index`` (with only *their* latest values), for Back/Next."""
    with open_study(study_or_path) as study:
        camp, aid = _member(study, campaign, annotator)
        rows = study.conn.execute(_PENDING, (camp.id, aid)).fetchall()
        if not 0 <= index < len(rows):
            raise IndexError(index)
        item_id, key, target, _n, _r = rows[index]
        return _view(study, camp, aid, item_id, key, target, index + 1, len(rows))


@dataclass
class MemberProgress:
    annotator: str
    group: str
    done: int
    total: int


def campaign_progress(study_or_path, campaign: str) -> list[MemberProgress]:
    """Every member's queue progress (items finished / assigned), sorted by group then name."""
    with open_study(study_or_path) as study:
        camp = get_campaign(study, campaign)
        rows = study.query(
            "SELECT a.id, a.name AS annotator, g.name AS grp FROM members m JOIN annotators a ON a.id = m.annotator_id"
            " JOIN groups g ON g.id = m.group_id WHERE m.campaign_id = ? ORDER BY g.name, a.name_key", (camp.id,))
        out = []
        for r in rows:
            pending = study.conn.execute(_PENDING, (camp.id, r["id"])).fetchall()
            out.append(MemberProgress(r["annotator"], r["grp"], sum(1 for p in pending if p[4] >= p[3]), len(pending)))
        return out
