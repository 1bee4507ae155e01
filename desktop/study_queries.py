"""Read-only study look-ups the Annotate and Studies pages need beyond ``annotation``'s public API.

Small adapter (DESIGN.md: ``desktop`` composes the others): rebuild an item's episode as an
:class:`engine.data.model.Episode` for the item views, turn a queue item into an
:class:`~desktop.widgets.item_views.ItemRef`, open the queue at any position (for Back/Next),
list a campaign's members and the study's episode sources. Every function reads the annotator's
*own* data only where ratings are involved (blind protocol, MiSC §5.1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.data.model import Episode, Link, Memory, Session, Speaker, Turn


def load_episode(study, episode_id: str) -> Episode:
    """The episode as stored in the study (content tables only — no ratings)."""
    row = study.query("SELECT * FROM episodes WHERE id = ?", (episode_id,))
    if not row:
        raise KeyError(f"no episode {episode_id!r} in the study")
    ep = row[0]
    partners = [Speaker(p["name"], p.get("job", "")) for p in json.loads(ep["partners"])]
    tags: dict[str, list[str]] = {}
    for r in study.query("SELECT turn_id, memory_id FROM memory_tags WHERE episode_id = ? ORDER BY rowid", (episode_id,)):
        tags.setdefault(r["turn_id"], []).append(r["memory_id"])
    sessions = []
    for s in study.query("SELECT * FROM sessions WHERE episode_id = ? ORDER BY idx", (episode_id,)):
        turns = [Turn(t["turn_id"], t["speaker"], t["text"], tags.get(t["turn_id"], []))
                 for t in study.query("SELECT * FROM turns WHERE episode_id = ? AND session_idx = ? ORDER BY position",
                                      (episode_id, s["idx"]))]
        sessions.append(Session(s["idx"], Speaker(s["partner_name"], s["partner_job"]), s["event"], turns, s["date"]))
    memories = [Memory(m["memory_id"], m["owner"], m["about"], m["text"], m["session_idx"], json.loads(m["source_turns"]))
                for m in study.query("SELECT * FROM memories WHERE episode_id = ? ORDER BY rowid", (episode_id,))]
    links = [Link(l["src"], l["dst"], l["kind"])
             for l in study.query("SELECT * FROM memory_links WHERE episode_id = ? ORDER BY rowid", (episode_id,))]
    return Episode(ep["id"], Speaker(ep["main_name"], ep["main_job"]), partners, sessions, memories, links,
                   ep["source"], json.loads(ep["meta"] or "{}"))


def item_ref(target: str, content: dict):
    """An :class:`ItemRef` from ``annotation.queue.item_content``'s dict."""
    from desktop.widgets.item_views import ItemRef

    ep = content["episode"]
    if target == "episode":
        return ItemRef("episode", ep)
    if target == "session":
        return ItemRef("session", ep, session=content["session"]["idx"])
    if target == "memory":
        return ItemRef("memory", ep, memory_id=content["memory"]["id"])
    if target == "link":
        return ItemRef("link", ep, memory_id=content["newer"]["id"], other_memory_id=content["older"]["id"],
                       link_kind=content.get("kind"))
    if target == "tag":
        return ItemRef("tag", ep, memory_id=content["memory"]["id"], turn_id=content["utterance"]["id"])
    raise ValueError(f"unknown item target {target!r}")


def queue_item_at(study, campaign: str, annotator: str, index: int):
    """The annotator's queue item at 0-based ``index`` (with only *their* latest values)."""
    from annotation.campaigns import get_campaign
    from annotation.queue import CriterionView, QueueItem, item_content, queue_items

    keys = queue_items(study, campaign, annotator)
    if not 0 <= index < len(keys):
        raise IndexError(index)
    camp = get_campaign(study, campaign)
    key = keys[index][0]
    item_id, target = study.conn.execute(
        "SELECT id, target FROM items WHERE campaign_id = ? AND key = ?", (camp.id, key)).fetchone()
    aid = study.one("SELECT id FROM annotators WHERE name = ?", (annotator,))
    mine = {r["name"]: r["value"] for r in study.query(
        "SELECT c.name, r.value FROM latest_ratings r JOIN criteria c ON c.id = r.criterion_id"
        " WHERE r.item_id = ? AND r.annotator_id = ?", (item_id, aid))}
    crits = [CriterionView(c.name, c.label, c.scale, c.definition, c.anchors, mine.get(c.name))
             for c in camp.criteria if c.target == target]
    return QueueItem(item_id, key, target, index + 1, len(keys), item_content(study, item_id), crits)


def annotator_group(study, campaign: str, annotator: str) -> str | None:
    """The group ``annotator`` rates in for ``campaign`` (``None`` when not a member)."""
    return study.one(
        "SELECT g.name FROM members m JOIN annotators a ON a.id = m.annotator_id JOIN groups g ON g.id = m.group_id"
        " JOIN campaigns c ON c.id = m.campaign_id WHERE a.name = ? AND c.name = ?", (annotator, campaign))


@dataclass
class MemberProgress:
    annotator: str
    group: str
    done: int
    total: int


def campaign_progress(study, campaign: str) -> list[MemberProgress]:
    """Every member's queue progress (items finished / assigned), sorted by group then name."""
    from annotation.queue import queue_status

    rows = study.query(
        "SELECT a.name AS annotator, g.name AS grp FROM members m JOIN annotators a ON a.id = m.annotator_id"
        " JOIN groups g ON g.id = m.group_id JOIN campaigns c ON c.id = m.campaign_id WHERE c.name = ?"
        " ORDER BY g.name, a.name", (campaign,))
    out = []
    for r in rows:
        st = queue_status(study, campaign, r["annotator"])
        out.append(MemberProgress(r["annotator"], r["grp"], st.done, st.total))
    return out


def episode_sources(study) -> list[tuple[str, int]]:
    """``(source, number of episodes)`` for every source in the study (``live-chat`` = saved chats)."""
    return [(r["source"] or "", r["n"]) for r in study.query(
        "SELECT source, COUNT(*) AS n FROM episodes GROUP BY source ORDER BY source")]


def episode_ids(study, source: str | None = None) -> list[str]:
    if source is None:
        return [r["id"] for r in study.query("SELECT id FROM episodes ORDER BY id")]
    return [r["id"] for r in study.query("SELECT id FROM episodes WHERE source = ? ORDER BY id", (source,))]


def content_counts(study) -> dict[str, int]:
    return {t: study.db[t].count for t in ("episodes", "sessions", "turns", "memories", "memory_links", "memory_tags")}
