"""Quality control after rating closes (MiSC §5.1): flagged items and disagreement across groups.

While a campaign is open, rating is blind — no one sees another group's values. The owner then
closes it (:func:`close_campaign`; no more ratings are accepted) and a *reviewer* account sees,
per item and criterion, each group's value (one annotator: their rating; several: the median
rounded down for Likert, the majority for pass/fail with ties as fail — the same rule as
:mod:`annotation.agreement`), whether the groups disagree, and the flags annotators raised while
rating. The reviewer's verdicts (``ok``/``flag`` with a note) are appended to ``reviews``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .accounts import annotator_id, find_annotator
from .campaigns import get_campaign
from .db import StudyError, now, open_study, write_tx
from .scales import format_value


def is_closed(study_or_path, campaign: str) -> bool:
    with open_study(study_or_path) as study:
        return study.one("SELECT closed_at FROM campaigns WHERE name = ?", (campaign,)) is not None


def close_campaign(study_or_path, campaign: str) -> str:
    """Close rating (the owner's action); returns the closing time. Closing twice is harmless."""
    with open_study(study_or_path) as study, write_tx(study):
        camp = get_campaign(study, campaign)
        stamp = study.one("SELECT closed_at FROM campaigns WHERE id = ?", (camp.id,))
        if stamp is None:
            stamp = now()
            study.conn.execute("UPDATE campaigns SET closed_at = ? WHERE id = ?", (stamp, camp.id))
        return stamp


def reopen_campaign(study_or_path, campaign: str) -> None:
    with open_study(study_or_path) as study, write_tx(study):
        study.conn.execute("UPDATE campaigns SET closed_at = NULL WHERE id = ?", (get_campaign(study, campaign).id,))


def flag_item(study_or_path, campaign: str, annotator: str, item_id: int, note: str = "") -> int:
    """An annotator marks an item for the reviewer (broken, unclear, offensive…), append-only."""
    with open_study(study_or_path) as study, write_tx(study):
        camp = get_campaign(study, campaign)
        aid = annotator_id(study, annotator)
        if study.one("SELECT 1 FROM assignments WHERE item_id = ? AND annotator_id = ? AND campaign_id = ?",
                     (item_id, aid, camp.id)) is None:
            raise StudyError(f"item {item_id} is not in {annotator!r}'s queue")
        return study.conn.execute("INSERT INTO item_flags (item_id, annotator_id, note, created_at) VALUES (?,?,?,?)",
                                  (item_id, aid, note.strip(), now())).lastrowid


def _group_value(values: list[int], scale: str) -> int:
    values = sorted(values)
    if scale == "likert":
        return values[(len(values) - 1) // 2]  # median, rounded down
    ones = sum(values)
    return 1 if ones * 2 > len(values) else 0  # majority; a tie fails


@dataclass
class ReviewItem:
    item_id: int
    key: str
    target: str
    criterion: str
    label: str
    scale: str
    group_values: dict[str, str]                 # group → its value, formatted ("4", "pass")
    ratings: list[dict] = field(default_factory=list)   # every latest rating: annotator, group, value, comment, id
    flags: list[dict] = field(default_factory=list)     # annotator, note, created_at
    reviews: list[dict] = field(default_factory=list)   # reviewer, verdict, note, created_at
    disagree: bool = False

    @property
    def reasons(self) -> str:
        out = []
        if self.disagree:
            out.append("groups disagree")
        if self.flags:
            out.append(f"flagged ×{len(self.flags)}")
        return ", ".join(out)


def review_items(study_or_path, campaign: str, reviewer: str | None = None) -> list[ReviewItem]:
    """Items needing review — flagged, or groups disagreeing — once the campaign is closed."""
    with open_study(study_or_path) as study:
        camp = get_campaign(study, campaign)
        if study.one("SELECT closed_at FROM campaigns WHERE id = ?", (camp.id,)) is None:
            raise StudyError(f"campaign {campaign!r} is still open for rating; review starts when the owner closes it "
                             "(Studies page → Campaigns → Close rating)")
        if reviewer is not None:
            found = find_annotator(study, reviewer)
            role = study.one("SELECT role FROM annotators WHERE id = ?", (found[0],)) if found else None
            if role != "reviewer":
                raise StudyError(f"{reviewer!r} is not a reviewer account")
        crit = {c.name: c for c in camp.criteria}
        rows = study.query(
            "SELECT r.id, r.item_id, i.key, i.target, c.name AS criterion, a.name AS annotator, g.name AS grp,"
            " r.value, r.comment FROM latest_ratings r JOIN items i ON i.id = r.item_id"
            " JOIN criteria c ON c.id = r.criterion_id JOIN annotators a ON a.id = r.annotator_id"
            " JOIN groups g ON g.id = r.group_id WHERE r.campaign_id = ? AND i.gold IS NULL ORDER BY i.id, c.position, g.name",
            (camp.id,))
        flags: dict[int, list[dict]] = {}
        for f in study.query("SELECT f.item_id, a.name AS annotator, f.note, f.created_at FROM item_flags f"
                             " JOIN annotators a ON a.id = f.annotator_id JOIN items i ON i.id = f.item_id"
                             " WHERE i.campaign_id = ? ORDER BY f.id", (camp.id,)):
            flags.setdefault(f["item_id"], []).append({k: f[k] for k in ("annotator", "note", "created_at")})
        reviews: dict[int, list[dict]] = {}
        for v in study.query("SELECT v.rating_id, v.reviewer, v.verdict, v.note, v.created_at FROM reviews v"
                             " JOIN ratings r ON r.id = v.rating_id WHERE r.campaign_id = ? ORDER BY v.id", (camp.id,)):
            reviews.setdefault(v["rating_id"], []).append(v)
        by_key: dict[tuple[int, str], ReviewItem] = {}
        per_group: dict[tuple[int, str], dict[str, list[int]]] = {}
        for r in rows:
            c = crit[r["criterion"]]
            k = (r["item_id"], r["criterion"])
            it = by_key.get(k)
            if it is None:
                it = by_key[k] = ReviewItem(r["item_id"], r["key"], r["target"], c.name, c.label, c.scale, {},
                                            flags=flags.get(r["item_id"], []))
            it.ratings.append({"id": r["id"], "annotator": r["annotator"], "group": r["grp"],
                               "value": format_value(c.scale, r["value"]), "comment": r["comment"]})
            it.reviews.extend({"rating_id": r["id"], **v} for v in reviews.get(r["id"], []))
            per_group.setdefault(k, {}).setdefault(r["grp"], []).append(r["value"])
        out = []
        for k, it in by_key.items():
            gv = {g: _group_value(v, it.scale) for g, v in per_group[k].items()}
            it.group_values = {g: format_value(it.scale, v) for g, v in sorted(gv.items())}
            it.disagree = len(set(gv.values())) > 1
            if it.disagree or it.flags:
                out.append(it)
        # flagged items with no rating at all still need a look
        rated = {k[0] for k in by_key}
        for item_id, fl in flags.items():
            if item_id not in rated:
                key, target = study.conn.execute("SELECT key, target FROM items WHERE id = ?", (item_id,)).fetchone()
                out.append(ReviewItem(item_id, key, target, "", "(no rating)", "", {}, flags=fl))
        return out


def review(study_or_path, campaign: str, reviewer: str, item: ReviewItem, verdict: str, note: str = "") -> list[int]:
    """The reviewer's verdict on every rating of ``item`` (``ok`` or ``flag``); returns the review ids."""
    if verdict not in ("ok", "flag"):
        raise StudyError(f"verdict must be ok or flag, got {verdict!r}")
    with open_study(study_or_path) as study:
        items = {(i.item_id, i.criterion): i for i in review_items(study, campaign, reviewer)}
        if (item.item_id, item.criterion) not in items:
            raise StudyError(f"item {item.key!r} is not awaiting review")
        name = find_annotator(study, reviewer)[1]
        with write_tx(study):
            return [study.conn.execute(
                "INSERT INTO reviews (rating_id, reviewer, verdict, note, created_at) VALUES (?,?,?,?,?)",
                (r["id"], name, verdict, note.strip(), now())).lastrowid for r in items[(item.item_id, item.criterion)].ratings]


