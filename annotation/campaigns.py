"""Campaigns: the MiSC human-evaluation protocol as presets, groups, annotators and assignments.

Presets follow the EMMA/MiSC paper (``001_…``): §5.2 "Dialogue" (Consistency, Coherence, Likert
1–5, Appendix F), §5.2 "Memory" (Memory Summarization per memory sentence, Memory Linking per
memory pair, Memory Tagging per utterance–memory tag; pass/fail) and §5.3 (Humanness,
Engagingness, Memorability, Likert 1–5, per episode). §5.1: three groups rate independently.

Inside a group, ``overlap`` says how many of its annotators rate each item: ``split`` (one — the
items are divided among them), ``full`` (all of them) or an integer k. Gold items (expected
answers set by the owner) go to every annotator. Assignments that an annotator has not rated yet
are rebalanced when people join, so a split stays even; rated ones never move.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

from .db import Study, StudyError, name_key, now, open_study, write_tx
from .accounts import ensure_annotator
from .scales import SCALES, default_anchors, parse_value

TARGETS = ("episode", "session", "memory", "link", "tag")


@dataclass
class Criterion:
    name: str
    label: str
    scale: str
    target: str
    definition: str
    anchors: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.scale not in SCALES:
            raise StudyError(f"criterion {self.name!r}: scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if self.target not in TARGETS:
            raise StudyError(f"criterion {self.name!r}: target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if not self.anchors:
            self.anchors = default_anchors(self.scale, self.name)


def _likert(name, label, target, definition):
    return Criterion(name, label, "likert", target, definition)


def _passfail(name, label, target, definition):
    return Criterion(name, label, "passfail", target, definition)


def preset_criteria(preset: str, unit: str = "session") -> list[Criterion]:
    """The MiSC criteria of a preset (definitions quoted from Appendix F and §5.2)."""
    if preset == "dataset":
        if unit not in ("session", "episode"):
            raise StudyError(f"the dataset preset rates a session or an episode, not {unit!r}")
        return [
            _likert("consistency", "Consistency", unit,
                    "The main speaker should have no contradiction in dialogue and memory for each individual speaker."),
            _likert("coherence", "Coherence", unit,
                    "All speakers must engage in conversation appropriate to the given job or relationship, "
                    "and maintain a natural flow throughout the entire session."),
        ]
    if preset == "memory":
        return [
            _passfail("memory_summarization", "Memory Summarization", "memory",
                      "The memory accurately retains the history of the conversation for each partner "
                      "from the main speaker's perspective."),
            _passfail("memory_linking", "Memory Linking", "link",
                      "Memory pairs should either convey the same context or represent updates on a specific event."),
            _passfail("memory_tagging", "Memory Tagging", "tag",
                      "The utterance reflects the contents of the given memories."),
        ]
    if preset == "model":
        return [
            _likert("humanness", "Humanness", "episode",
                    "All speakers demonstrate high fluency and natural emotional interaction, showcasing a sense of humanity."),
            _likert("engagingness", "Engagingness", "episode",
                    "All speakers must actively participate in the given conversation context."),
            _likert("memorability", "Memorability", "episode",
                    "All speakers can accurately remember the conversation context based on Egocentric Memory "
                    "and use memory appropriately as needed."),
        ]
    raise StudyError(f"unknown preset {preset!r}; choose dataset, memory, model or custom")


@dataclass
class Campaign:
    id: int
    name: str
    preset: str
    unit: str
    overlap: str
    seed: int
    groups: list[str]
    criteria: list[Criterion]
    n_items: int
    created_at: str
    description: str = ""
    closed_at: str | None = None  # set when the owner closes rating (annotation.review)


def _overlap(value) -> str:
    text = str(value).strip().lower()
    if text in ("split", "full"):
        return text
    try:
        k = int(text)
    except ValueError:
        raise StudyError(f"overlap must be split, full or a number of annotators per item, got {value!r}") from None
    if k < 1:
        raise StudyError(f"overlap must be at least 1 annotator per item, got {k}")
    return "split" if k == 1 else str(k)


def group_names(groups) -> list[str]:
    """``3`` → ``["A", "B", "C"]``; a list of names is kept (checked for duplicates)."""
    if isinstance(groups, int) or (isinstance(groups, str) and groups.isdigit()):
        n = int(groups)
        if not 1 <= n <= 26:
            raise StudyError(f"a campaign needs between 1 and 26 groups, got {n}")
        return [chr(ord("A") + i) for i in range(n)]
    names = [str(g).strip() for g in groups]
    if not names or any(not g for g in names) or len(set(names)) != len(names):
        raise StudyError(f"group names must be distinct and non-empty, got {names}")
    return names


def _item_rows(study: Study, campaign_id: int, targets: set[str], episodes: list[str]) -> list[dict]:
    marks = ",".join("?" * len(episodes))
    rows: list[dict] = []

    def add(target, episode_id, key, ref):
        rows.append({"campaign_id": campaign_id, "key": key, "target": target, "episode_id": episode_id,
                     "ref": json.dumps(ref, ensure_ascii=False), "gold": None})

    if "episode" in targets:
        for r in study.query(f"SELECT id FROM episodes WHERE id IN ({marks}) ORDER BY id", episodes):
            add("episode", r["id"], r["id"], {})
    if "session" in targets:
        for r in study.query(f"SELECT episode_id, idx FROM sessions WHERE episode_id IN ({marks}) ORDER BY episode_id, idx", episodes):
            add("session", r["episode_id"], f"{r['episode_id']}#s{r['idx']}", {"session": r["idx"]})
    if "memory" in targets:
        for r in study.query(f"SELECT episode_id, memory_id FROM memories WHERE episode_id IN ({marks}) ORDER BY episode_id, rowid", episodes):
            add("memory", r["episode_id"], f"{r['episode_id']}#m:{r['memory_id']}", {"memory": r["memory_id"]})
    if "link" in targets:
        for r in study.query(f"SELECT episode_id, src, dst FROM memory_links WHERE episode_id IN ({marks}) ORDER BY episode_id, rowid", episodes):
            add("link", r["episode_id"], f"{r['episode_id']}#l:{r['src']}>{r['dst']}", {"src": r["src"], "dst": r["dst"]})
    if "tag" in targets:
        for r in study.query(f"SELECT episode_id, turn_id, memory_id FROM memory_tags WHERE episode_id IN ({marks}) ORDER BY episode_id, rowid", episodes):
            add("tag", r["episode_id"], f"{r['episode_id']}#t:{r['turn_id']}@{r['memory_id']}",
                {"turn": r["turn_id"], "memory": r["memory_id"]})
    return rows


def create_campaign(study_or_path, name: str, preset: str, *, groups=3, overlap="split", unit: str = "session",
                    episodes: list[str] | None = None, sample: int | None = None, seed: int = 0,
                    criteria: list[Criterion] | None = None, description: str = "") -> Campaign:
    """Create a campaign with its criteria, groups and items (one transaction).

    ``episodes`` restricts it to those episode ids, ``sample`` draws that many episodes at random
    (``seed``); default: every episode in the study. Existing annotators whose default group is
    one of the campaign's groups join it.
    """
    with open_study(study_or_path) as study:
        name = name.strip()
        if not name:
            raise StudyError("a campaign needs a name")
        crit = list(criteria) if criteria else preset_criteria(preset, unit)
        if preset == "custom" and not criteria:
            raise StudyError("a custom campaign needs at least one criterion")
        if len({c.name for c in crit}) != len(crit):
            raise StudyError("criterion names must be distinct")
        names = group_names(groups)
        ov = _overlap(overlap)
        all_eps = [r["id"] for r in study.query("SELECT id FROM episodes ORDER BY id")]
        if episodes:
            missing = sorted(set(episodes) - set(all_eps))
            if missing:
                raise StudyError(f"episodes not in the study: {', '.join(missing[:5])}")
            chosen = sorted(set(episodes))
        else:
            chosen = all_eps
        if sample is not None:
            if sample < 1:
                raise StudyError("sample must be at least 1")
            chosen = sorted(random.Random(seed).sample(chosen, min(sample, len(chosen))))
        if not chosen:
            raise StudyError("the study has no episodes; import some first (memlab study import)")
        with write_tx(study):
            if study.one("SELECT id FROM campaigns WHERE name = ?", (name,)) is not None:
                raise StudyError(f"a campaign named {name!r} already exists")
            cid = study.conn.execute(
                "INSERT INTO campaigns (name, preset, unit, overlap, seed, created_at, description) VALUES (?,?,?,?,?,?,?)",
                (name, preset, crit[0].target if preset != "dataset" else unit, ov, seed, now(), description)).lastrowid
            study.db["criteria"].insert_all(
                {"campaign_id": cid, "name": c.name, "label": c.label, "scale": c.scale, "target": c.target,
                 "definition": c.definition, "anchors": json.dumps(c.anchors, ensure_ascii=False), "position": i}
                for i, c in enumerate(crit))
            study.db["groups"].insert_all({"campaign_id": cid, "name": g} for g in names)
            items = _item_rows(study, cid, {c.target for c in crit}, chosen)
            if not items:
                raise StudyError(f"the chosen episodes have nothing to rate for {', '.join(sorted({c.target for c in crit}))} "
                                 "(e.g. no memory links or tags)")
            present = {r["target"] for r in items}
            dropped = [c for c in crit if c.target not in present]
            if dropped:  # e.g. ConvAI2/LoCoMo have no memory links or tags: say so instead of empty criteria
                study.conn.execute("DELETE FROM criteria WHERE campaign_id = ? AND target NOT IN (%s)"
                                   % ",".join("?" * len(present)), (cid, *sorted(present)))
                note = "; ".join(f"{c.name} left out: the chosen episodes have no {c.target}s" for c in dropped)
                study.conn.execute("UPDATE campaigns SET description = trim(description || ' ' || ?) WHERE id = ?", (note, cid))
            study.db["items"].insert_all(items, batch_size=2000)
            for a in study.query("SELECT id, default_group FROM annotators WHERE default_group IS NOT NULL"):
                if a["default_group"] in names:
                    _join(study, a["id"], cid, a["default_group"])
            _assign(study, cid)
        return get_campaign(study, name)


def get_campaign(study_or_path, name: str) -> Campaign:
    with open_study(study_or_path) as study:
        rows = study.query("SELECT * FROM campaigns WHERE name = ?", (name,))
        if not rows:
            known = [r["name"] for r in study.query("SELECT name FROM campaigns ORDER BY id")]
            raise StudyError(f"no campaign {name!r} in {study.path}" + (f"; campaigns: {', '.join(known)}" if known else ""))
        c = rows[0]
        crit = [Criterion(r["name"], r["label"], r["scale"], r["target"], r["definition"], json.loads(r["anchors"]))
                for r in study.query("SELECT * FROM criteria WHERE campaign_id = ? ORDER BY position", (c["id"],))]
        groups = [r["name"] for r in study.query("SELECT name FROM groups WHERE campaign_id = ? ORDER BY id", (c["id"],))]
        n_items = study.one("SELECT COUNT(*) FROM items WHERE campaign_id = ?", (c["id"],))
        return Campaign(c["id"], c["name"], c["preset"], c["unit"], c["overlap"], c["seed"], groups, crit, n_items,
                        c["created_at"], c["description"], c.get("closed_at"))


def list_campaigns(study_or_path) -> list[Campaign]:
    with open_study(study_or_path) as study:
        return [get_campaign(study, r["name"]) for r in study.query("SELECT name FROM campaigns ORDER BY id")]


def annotator_group(study_or_path, campaign: str, annotator: str) -> str | None:
    """The group ``annotator`` (any case) rates in for ``campaign`` (``None`` when not a member)."""
    with open_study(study_or_path) as study:
        return study.one(
            "SELECT g.name FROM members m JOIN annotators a ON a.id = m.annotator_id JOIN groups g ON g.id = m.group_id"
            " JOIN campaigns c ON c.id = m.campaign_id WHERE a.name_key = ? AND c.name = ?", (name_key(annotator), campaign))


def member_seed(campaign_seed: int, annotator: str) -> int:
    digest = hashlib.blake2b(f"{campaign_seed}:{annotator}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def queue_position(seed: int, item_id: int) -> int:
    """The item's place in one annotator's randomised queue: a seeded hash, so the order is fixed
    per annotator, differs between annotators, and does not move when items are reassigned."""
    digest = hashlib.blake2b(f"{seed}:{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _group_id(study: Study, campaign_id: int, group: str) -> int:
    gid = study.one("SELECT id FROM groups WHERE campaign_id = ? AND name = ?", (campaign_id, group))
    if gid is None:
        names = [r["name"] for r in study.query("SELECT name FROM groups WHERE campaign_id = ?", (campaign_id,))]
        raise StudyError(f"campaign has no group {group!r}; its groups are {', '.join(names)}")
    return gid


def _join(study: Study, annotator_id: int, campaign_id: int, group: str) -> None:
    gid = _group_id(study, campaign_id, group)
    row = study.conn.execute("SELECT group_id FROM members WHERE annotator_id = ? AND campaign_id = ?",
                             (annotator_id, campaign_id)).fetchone()
    if row is not None:
        if row[0] != gid:
            raise StudyError("an annotator rates in one group per campaign (groups are blind to each other)")
        return
    name = study.one("SELECT name FROM annotators WHERE id = ?", (annotator_id,))
    seed = study.one("SELECT seed FROM campaigns WHERE id = ?", (campaign_id,))
    study.conn.execute("INSERT INTO members VALUES (?, ?, ?, ?, ?)",
                       (annotator_id, campaign_id, gid, member_seed(seed, name), now()))


def add_annotator(study_or_path, name: str, group: str, campaign: str | None = None, *,
                  pin: str | None = None, role: str = "annotator") -> list[str]:
    """Add ``name`` (an existing account, matched ignoring case, or a new one with ``pin``/``role``)
    to group ``group`` of ``campaign`` — or, without a campaign, of every campaign that has that
    group (and of later ones). Returns the campaigns joined."""
    with open_study(study_or_path) as study:
        with write_tx(study):
            aid = ensure_annotator(study, name, None if campaign else group, pin=pin, role=role)
            if campaign is None:
                study.conn.execute("UPDATE annotators SET default_group = ? WHERE id = ?", (group, aid))
                targets = [r["campaign_id"] for r in study.query("SELECT DISTINCT campaign_id FROM groups WHERE name = ?", (group,))]
            else:
                targets = [get_campaign(study, campaign).id]
            for cid in targets:
                _join(study, aid, cid, group)
                _assign(study, cid)
            return [study.one("SELECT name FROM campaigns WHERE id = ?", (cid,)) for cid in targets]


def _assign(study: Study, campaign_id: int) -> None:
    """(Re)balance assignments of one campaign (inside a write transaction); see the module docstring."""
    overlap, seed = study.conn.execute("SELECT overlap, seed FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
    items = study.query("SELECT id, gold IS NOT NULL AS gold FROM items WHERE campaign_id = ? ORDER BY id", (campaign_id,))
    rated = {(r["item_id"], r["annotator_id"]) for r in study.query(
        "SELECT DISTINCT item_id, annotator_id FROM ratings WHERE campaign_id = ?", (campaign_id,))}
    for g in study.query("SELECT id FROM groups WHERE campaign_id = ? ORDER BY id", (campaign_id,)):
        gid = g["id"]
        members = study.query("SELECT annotator_id AS id, seed FROM members WHERE group_id = ? ORDER BY annotator_id", (gid,))
        if not members:
            continue
        seeds = {m["id"]: m["seed"] for m in members}
        existing = study.query("SELECT item_id, annotator_id FROM assignments WHERE group_id = ?", (gid,))
        keep = {(a["item_id"], a["annotator_id"]) for a in existing if (a["item_id"], a["annotator_id"]) in rated}
        study.conn.execute("DELETE FROM assignments WHERE group_id = ?", (gid,))
        k = len(members) if overlap == "full" else (1 if overlap == "split" else min(int(overlap), len(members)))
        load = {m["id"]: 0 for m in members}
        holders: dict[int, set[int]] = {}
        for item_id, aid in keep:
            holders.setdefault(item_id, set()).add(aid)
            if aid in load:
                load[aid] += 1
        rng = random.Random(f"{seed}:{gid}")
        order = [m["id"] for m in members]
        pairs = set(keep)
        for it in items:
            have = holders.get(it["id"], set())
            want = len(members) if it["gold"] else k
            need = want - len(have & set(order))
            if need <= 0:
                continue
            rng.shuffle(order)
            for aid in sorted((a for a in order if a not in have), key=lambda a: load[a])[:need]:
                pairs.add((it["id"], aid))
                load[aid] += 1
        stamp = now()
        study.db["assignments"].insert_all(
            ({"item_id": i, "annotator_id": a, "campaign_id": campaign_id, "group_id": gid,
              "position": queue_position(seeds.get(a, 0), i), "assigned_at": stamp} for i, a in pairs),
            batch_size=2000)


def set_gold(study_or_path, campaign: str, item_key: str, answers: dict) -> None:
    """Mark an item as gold with expected answers ``{criterion: value}``; every annotator gets it."""
    with open_study(study_or_path) as study:
        camp = get_campaign(study, campaign)
        scales = {c.name: c for c in camp.criteria}
        clean = {}
        for crit, value in answers.items():
            if crit not in scales:
                raise StudyError(f"campaign {campaign!r} has no criterion {crit!r}")
            clean[crit] = parse_value(scales[crit].scale, value)
        with write_tx(study):
            row = study.conn.execute("SELECT id, target FROM items WHERE campaign_id = ? AND key = ?",
                                     (camp.id, item_key)).fetchone()
            if row is None:
                raise StudyError(f"campaign {campaign!r} has no item {item_key!r}")
            for crit in clean:
                if scales[crit].target != row[1]:
                    raise StudyError(f"criterion {crit!r} rates {scales[crit].target}s, item {item_key!r} is a {row[1]}")
            study.conn.execute("UPDATE items SET gold = ? WHERE id = ?", (json.dumps(clean), row[0]))
            _assign(study, camp.id)
