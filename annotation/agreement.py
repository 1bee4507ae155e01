"""Agreement across annotator groups, per criterion — vectorised with numpy.

Implements issue 2 §5 for the MiSC protocol (EMMA paper §5.1: "three groups of annotators, each
conducting its assessments independently … agreement among the results from all three groups"):

* group summaries — Likert mean, SD (ddof=1) and the 1–5 distribution; pass/fail pass rate;
* **cross-group agreement** — per item and group one value (one annotator: their rating; several:
  the median rounded down for Likert, the majority for pass/fail with ties as fail); agreement =
  items whose group values are all equal ÷ items rated by every group; ``agreement_within_1``
  (Likert) = share with max − min ≤ 1;
* Krippendorff's α (``krippendorff`` package; annotators are coders, items are units; ordinal over
  1..5 for Likert, nominal for pass/fail) with a percentile bootstrap 95% interval over items
  (1,000 resamples, fixed seed). The bootstrap uses the coincidence-matrix form of α
  (Krippendorff 2011, "Computing Krippendorff's alpha-reliability", §C–E): a resample of items is a
  multinomial draw over the distinct per-item value patterns, so each resample costs one small
  matrix product instead of a pass over every item; tests check it equals ``krippendorff.alpha``
  on the resampled data;
* Fleiss' κ (``statsmodels``) when every item has the same number (≥ 2) of ratings, else ``None``
  with the reason;
* pairwise Cohen's κ between group values (``statsmodels.stats.inter_rater.cohens_kappa``;
  quadratic weights over the full label set 1..5 for Likert, unweighted for pass/fail).

Input is :class:`CriterionRatings` (integer-coded arrays), built from a study
(:func:`from_study`), a ratings CSV (:func:`load_csv`) or any records (:func:`from_records`).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from itertools import combinations

import krippendorff
import numpy as np
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

from .ratings import CsvProblem, RatingsCsvError, read_csv_rows
from .scales import PASS_WORDS

LIKERT_CRITERIA = ("consistency", "coherence", "humanness", "engagingness", "memorability")
PASSFAIL_CRITERIA = ("memory_summarization", "memory_linking", "memory_tagging")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20241003


@dataclass
class CriterionRatings:
    """Latest ratings of one criterion. ``values``: 1..5 (Likert) or 0/1 (fail/pass)."""

    name: str
    scale: str                 # "likert" | "passfail"
    items: np.ndarray          # item codes 0..n_items-1
    groups: np.ndarray         # group codes 0..len(group_names)-1
    annotators: np.ndarray     # annotator codes
    values: np.ndarray
    group_names: list[str]
    n_items: int

    @property
    def k(self) -> int:
        return 5 if self.scale == "likert" else 2

    def value_index(self) -> np.ndarray:
        return self.values - 1 if self.scale == "likert" else self.values


def _f(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


# --- group values -----------------------------------------------------------------------------
def counts_per_item_group(d: CriterionRatings) -> np.ndarray:
    """``(n_items, n_groups, k)`` counts of each value per item and group."""
    g, k = len(d.group_names), d.k
    flat = (d.items.astype(np.int64) * g + d.groups) * k + d.value_index()
    return np.bincount(flat, minlength=d.n_items * g * k).reshape(d.n_items, g, k)


def group_values(counts: np.ndarray, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """Each (item, group)'s value and whether it exists.

    Likert: the median rounded down (for an even count, ⌊(a + b) / 2⌋ of the two middle ratings),
    as a value 1..5. Pass/fail: 1 when passes outnumber fails, else 0 (a tie counts as fail).
    """
    n = counts.sum(-1)
    present = n > 0
    if scale == "passfail":
        return (counts[..., 1] > counts[..., 0]).astype(np.int64), present
    cum = np.cumsum(counts, -1)
    lo_rank = (n + 1) // 2
    hi_rank = n // 2 + 1
    lo = np.argmax(cum >= lo_rank[..., None], -1) + 1
    hi = np.argmax(cum >= np.maximum(hi_rank, 1)[..., None], -1) + 1
    hi = np.where(n % 2 == 1, lo, hi)
    return (lo + hi) // 2, present


# --- Krippendorff's alpha -----------------------------------------------------------------------
def _delta(scale: str, marginals: np.ndarray) -> np.ndarray:
    """Squared distance δ²(c, k) for each resample: nominal 0/1; ordinal uses the marginals
    n_g: (Σ_{g=c..k} n_g − (n_c + n_k)/2)² (Krippendorff 2011, eq. for ordinal metric)."""
    k = marginals.shape[-1]
    if scale == "passfail":
        return np.broadcast_to(1.0 - np.eye(k), marginals.shape[:-1] + (k, k))
    cum = np.cumsum(marginals, -1)
    lo = np.minimum.outer(np.arange(k), np.arange(k))
    hi = np.maximum.outer(np.arange(k), np.arange(k))
    before = np.where(lo > 0, cum[..., np.maximum(lo - 1, 0)], 0.0)
    span = cum[..., hi] - before
    return (span - (marginals[..., :, None] + marginals[..., None, :]) / 2.0) ** 2


def alpha_from_patterns(patterns: np.ndarray, weights: np.ndarray, scale: str) -> np.ndarray:
    """α for ``weights`` (``(B, P)`` multiplicities of each distinct per-item value-count pattern).

    Coincidences o_ck = Σ_u w_u (n_uc n_uk − [c=k] n_uc) / (m_u − 1) over pairable units (m_u ≥ 2);
    α = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck with n_c = Σ_k o_ck, n = Σ n_c.
    """
    m = patterns.sum(1).astype(float)
    ok = m >= 2
    p = patterns.astype(float)
    per = (p[:, :, None] * p[:, None, :] - np.einsum("uc,ck->uck", p, np.eye(p.shape[1])))
    per = np.where(ok[:, None, None], per / np.where(ok, m - 1, 1.0)[:, None, None], 0.0)
    o = np.tensordot(np.atleast_2d(weights).astype(float), per, axes=(1, 0))       # (B, k, k)
    nc = o.sum(-1)
    n = nc.sum(-1)
    delta = _delta(scale, nc)
    d_o = (o * delta).sum((-1, -2))
    d_e = (nc[..., :, None] * nc[..., None, :] * delta).sum((-1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (n - 1) * d_o / d_e


def krippendorff_alpha(value_counts: np.ndarray, scale: str) -> tuple[float | None, str | None]:
    """α from the ``krippendorff`` package (value_counts: items × values)."""
    pairable = value_counts.sum(1) >= 2
    if not pairable.any():
        return None, "no item has two or more ratings"
    vc = value_counts[pairable]
    if (vc.sum(0) > 0).sum() < 2:
        return None, "every rating has the same value, so α is undefined"
    domain = list(range(1, 6)) if scale == "likert" else [0, 1]
    level = "ordinal" if scale == "likert" else "nominal"
    return float(krippendorff.alpha(value_counts=vc, value_domain=domain, level_of_measurement=level)), None


def value_patterns(value_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``value_counts`` and how often each occurs (rows packed into one integer
    key and counted with ``bincount`` when the key space is small, else ``np.unique``)."""
    base = int(value_counts.max()) + 1 if value_counts.size else 1
    k = value_counts.shape[1]
    if base ** k <= 4_000_000:
        weights = base ** np.arange(k, dtype=np.int64)
        keys = value_counts.astype(np.int64) @ weights
        freq = np.bincount(keys, minlength=base ** k)
        found = np.flatnonzero(freq)
        patterns = (found[:, None] // weights[None, :]) % base
        return patterns, freq[found]
    patterns, inverse = np.unique(value_counts, axis=0, return_inverse=True)
    return patterns, np.bincount(inverse.reshape(-1), minlength=len(patterns))


def bootstrap_alpha_ci(value_counts: np.ndarray, scale: str, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> list[float] | None:
    """Percentile 95% interval of α over ``resamples`` resamples of items with replacement."""
    if resamples <= 0 or len(value_counts) == 0:
        return None
    patterns, freq = value_patterns(value_counts)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(value_counts), freq / freq.sum(), size=resamples)
    alphas = alpha_from_patterns(patterns, draws, scale)
    alphas = alphas[np.isfinite(alphas)]
    if len(alphas) < resamples / 2:
        return None
    lo, hi = np.percentile(alphas, [2.5, 97.5])
    return [float(lo), float(hi)]


# --- kappas ----------------------------------------------------------------------------------
def fleiss(value_counts: np.ndarray) -> tuple[float | None, str | None]:
    per_item = value_counts.sum(1)
    rated = per_item > 0
    if not rated.any():
        return None, "no ratings"
    lo, hi = int(per_item[rated].min()), int(per_item[rated].max())
    if lo != hi:
        return None, f"items have between {lo} and {hi} ratings; Fleiss' kappa needs the same number (>= 2) for every item"
    if lo < 2:
        return None, "every item has a single rating; Fleiss' kappa needs at least 2 per item"
    table = value_counts[rated]
    if (table.sum(0) > 0).sum() < 2:
        return None, "every rating has the same value, so kappa is undefined"
    with np.errstate(divide="ignore", invalid="ignore"):
        value = fleiss_kappa(table, method="fleiss")
    return (_f(value), None) if np.isfinite(value) else (None, "kappa is undefined for these ratings")


def cohen(a: np.ndarray, b: np.ndarray, scale: str) -> float | None:
    """Cohen's κ between two groups' values: quadratic weights over 1..5 (Likert), unweighted (pass/fail)."""
    if len(a) == 0:
        return None
    k = 5 if scale == "likert" else 2
    ai, bi = (a - 1, b - 1) if scale == "likert" else (a, b)
    table = np.bincount(ai * k + bi, minlength=k * k).reshape(k, k).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = cohens_kappa(table, wt="quadratic" if scale == "likert" else None, return_results=False)
    return _f(res)


# --- one criterion -----------------------------------------------------------------------------
def _summary(dist: np.ndarray, n_items: int, n_annotators: int, scale: str) -> dict:
    """Summary from a value distribution (counts of 1..5, or of fail/pass)."""
    n = int(dist.sum())
    out = {"n_ratings": n, "n_items": int(n_items), "n_annotators": int(n_annotators)}
    if scale == "likert":
        v = np.arange(1, 6, dtype=float)
        mean = float((dist * v).sum() / n) if n else None
        out["mean"] = mean
        out["sd"] = float(math.sqrt(max((dist * (v - mean) ** 2).sum(), 0.0) / (n - 1))) if n > 1 else None
        out["distribution"] = {str(i): int(c) for i, c in zip(range(1, 6), dist)}
    else:
        out["pass_rate"] = float(dist[1] / n) if n else None
        out["distribution"] = {"pass": int(dist[1]), "fail": int(dist[0])}
    return out


def criterion_agreement(d: CriterionRatings, *, bootstrap: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
    """Every §5 figure for one criterion (the object under ``criteria.NAME`` of ``--json``)."""
    n_groups, k, n = len(d.group_names), d.k, d.n_items
    v0 = d.value_index()
    ig = d.items.astype(np.int64) * n_groups + d.groups
    n_ig = np.bincount(ig, minlength=n * n_groups).reshape(n, n_groups)
    present = n_ig > 0
    if len(ig) and n_ig.max() > 1:   # several annotators per group on some item: median / majority
        gv, _ = group_values(np.bincount(ig * k + v0, minlength=n * n_groups * k).reshape(n, n_groups, k), d.scale)
    else:                            # one rating per (item, group): it is the group's value
        gv = np.zeros((n, n_groups), dtype=np.int64)
        gv[d.items, d.groups] = d.values
    value_counts_all = np.bincount(d.items.astype(np.int64) * k + v0, minlength=n * k).reshape(n, k)
    per_item = value_counts_all.sum(1)
    rated_items = per_item > 0
    full = present.all(1)
    n_full = int(full.sum())
    out: dict = {"scale": d.scale, "n_items": int(rated_items.sum()), "n_ratings": int(len(d.values)),
                 "n_items_all_groups": n_full}
    n_ann = int(d.annotators.max()) + 1 if len(d.annotators) else 0
    ann_in_group = np.bincount(d.groups * n_ann + d.annotators, minlength=n_groups * n_ann).reshape(n_groups, n_ann) > 0
    dist = np.bincount(d.groups.astype(np.int64) * k + v0, minlength=n_groups * k).reshape(n_groups, k)
    out["groups"] = {name: _summary(dist[gi], present[:, gi].sum(), ann_in_group[gi].sum(), d.scale)
                     for gi, name in enumerate(d.group_names)}
    out["overall"] = _summary(dist.sum(0), rated_items.sum(), ann_in_group.any(0).sum(), d.scale)
    if n_full and n_groups >= 2:
        v = gv[full]
        spread = v.max(1) - v.min(1)
        out["cross_group_agreement"] = float((spread == 0).mean())
        out["agreement_within_1"] = float((spread <= 1).mean()) if d.scale == "likert" else None
    else:
        out["cross_group_agreement"] = None
        out["agreement_within_1"] = None
    value_counts = value_counts_all[rated_items]
    alpha, note = krippendorff_alpha(value_counts, d.scale)
    out["krippendorff_alpha"] = alpha
    out["krippendorff_alpha_ci"] = bootstrap_alpha_ci(value_counts, d.scale, bootstrap, seed) if alpha is not None else None
    out["krippendorff_alpha_note"] = note
    out["fleiss_kappa"], out["fleiss_kappa_note"] = fleiss(value_counts)
    out["pairwise_kappa"] = {}
    for a, b in combinations(range(len(d.group_names)), 2):
        both = present[:, a] & present[:, b]
        out["pairwise_kappa"][f"{d.group_names[a]}|{d.group_names[b]}"] = cohen(gv[both, a], gv[both, b], d.scale)
    return out


def compute_agreement(data: dict[str, CriterionRatings], *, bootstrap: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED, progress=None) -> dict:
    """``{"criteria": {NAME: {...}}}`` — the exact shape printed by ``memlab agreement --json``."""
    out = {}
    for i, (name, d) in enumerate(data.items(), 1):
        out[name] = criterion_agreement(d, bootstrap=bootstrap, seed=seed)
        if progress:
            progress(i, len(data))
    return {"criteria": out}


# --- building the input -------------------------------------------------------------------------
def _codes(values) -> tuple[np.ndarray, list]:
    uniq, inv = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    return inv.reshape(-1).astype(np.int64), list(uniq)


def from_arrays(name: str, scale: str, items, groups, annotators, values) -> CriterionRatings:
    """Build from parallel sequences; the last rating per (item, annotator) counts."""
    item_c, item_names = _codes(items)
    group_c, group_names = _codes(groups)
    ann_c, _ = _codes(annotators)
    values = np.asarray(values, dtype=np.int64)
    key = item_c * (ann_c.max() + 1 if len(ann_c) else 1) + ann_c
    _, last = np.unique(key[::-1], return_index=True)
    keep = np.sort(len(key) - 1 - last)
    return CriterionRatings(name, scale, item_c[keep], group_c[keep], ann_c[keep], values[keep],
                            [str(g) for g in group_names], len(item_names))


def infer_scale(name: str, raw_values: list[str]) -> str | None:
    """Preset names decide; otherwise words or 0/1 mean pass/fail, whole numbers 1..5 mean Likert."""
    if name in LIKERT_CRITERIA:
        return "likert"
    if name in PASSFAIL_CRITERIA:
        return "passfail"
    vals = {v.strip().lower() for v in raw_values}
    if vals and vals <= set(PASS_WORDS) and (vals - {"1", "0"} or "0" in vals):
        return "passfail"
    if vals and vals <= {"1", "2", "3", "4", "5"}:
        return "likert"
    return None


def load_csv(path) -> dict[str, CriterionRatings]:
    """Read ``item,criterion,annotator,group,value`` rows; any bad row → :class:`RatingsCsvError`
    listing every bad line. The last row per (item, criterion, annotator) counts."""
    from .scales import parse_value
    from .db import StudyError

    rows = read_csv_rows(path)
    problems: list[CsvProblem] = []
    by_crit: dict[str, list[tuple[int, dict]]] = {}
    ann_group: dict[str, tuple[str, int]] = {}
    for line, row in rows:
        if "_error" in row:
            problems.append(CsvProblem(line, row["_error"]))
            continue
        empty = [c for c in ("item", "criterion", "annotator", "group", "value") if not row[c]]
        if empty:
            problems.append(CsvProblem(line, f"empty {', '.join(empty)}"))
            continue
        first = ann_group.setdefault(row["annotator"], (row["group"], line))
        if first[0] != row["group"]:
            problems.append(CsvProblem(line, f"annotator {row['annotator']!r} is in group {first[0]!r} on line {first[1]}, "
                                             f"not {row['group']!r} (groups must be independent)"))
            continue
        by_crit.setdefault(row["criterion"].strip().lower(), []).append((line, row))
    data = {}
    for name, crows in by_crit.items():
        scale = infer_scale(name, [r["value"] for _, r in crows])
        if scale is None:
            problems.append(CsvProblem(crows[0][0], f"criterion {name!r}: values are neither all 1..5 nor all pass/fail"))
            continue
        vals = []
        for line, r in crows:
            try:
                vals.append(parse_value(scale, r["value"]))
            except StudyError as e:
                problems.append(CsvProblem(line, f"criterion {name!r}: {e}"))
        if len(vals) == len(crows):
            data[name] = from_arrays(name, scale, [r["item"] for _, r in crows], [r["group"] for _, r in crows],
                                     [r["annotator"] for _, r in crows], vals)
    if problems:
        raise RatingsCsvError(path, sorted(problems, key=lambda p: p.line))
    if not data:
        raise RatingsCsvError(path, [CsvProblem(1, "no ratings in the file")])
    return data


def from_study(study_or_path, campaign: str) -> dict[str, CriterionRatings]:
    """Latest ratings of a campaign's criteria (gold items excluded: they measure annotators)."""
    from .campaigns import get_campaign
    from .db import open_study
    from .ratings import latest_ratings

    with open_study(study_or_path) as study:
        camp = get_campaign(study, campaign)
        rows = latest_ratings(study, campaign, include_gold=False)
        out = {}
        for c in camp.criteria:
            sel = [r for r in rows if r["criterion"] == c.name]
            d = from_arrays(c.name, c.scale, [r["item"] for r in sel], [r["group"] for r in sel],
                            [r["annotator"] for r in sel], [r["value"] for r in sel])
            # keep every campaign group, even one with no ratings yet
            names = list(camp.groups)
            remap = np.array([names.index(g) for g in d.group_names], dtype=np.int64)
            d.groups = remap[d.groups] if len(d.groups) else d.groups
            d.group_names = names
            out[c.name] = d
        return out


def agreement_for_study(study_or_path, campaign: str, *, bootstrap: int = BOOTSTRAP_RESAMPLES, progress=None) -> dict:
    return compute_agreement(from_study(study_or_path, campaign), bootstrap=bootstrap, progress=progress)


def agreement_for_csv(path, *, bootstrap: int = BOOTSTRAP_RESAMPLES, progress=None) -> dict:
    return compute_agreement(load_csv(path), bootstrap=bootstrap, progress=progress)


def format_table(result: dict) -> str:
    """A plain-text table of the main figures (the non-``--json`` CLI output)."""
    lines = []
    for name, c in result["criteria"].items():
        lines.append(f"{name} ({c['scale']}): {c['n_items']} items, {c['n_ratings']} ratings, "
                     f"{c['n_items_all_groups']} rated by every group")
        for g, s in c["groups"].items():
            main = (f"mean {s['mean']:.2f} sd {s['sd']:.2f}" if c["scale"] == "likert" and s["mean"] is not None and s["sd"] is not None
                    else f"pass rate {s['pass_rate']:.1%}" if c["scale"] == "passfail" and s["pass_rate"] is not None
                    else "no ratings")
            lines.append(f"  group {g}: {s['n_ratings']} ratings by {s['n_annotators']} annotator(s); {main}")
        fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
        ci = c["krippendorff_alpha_ci"]
        lines.append(f"  cross-group agreement {fmt(c['cross_group_agreement'])}"
                     + (f", within 1: {fmt(c['agreement_within_1'])}" if c["scale"] == "likert" else ""))
        lines.append(f"  Krippendorff alpha {fmt(c['krippendorff_alpha'])}"
                     + (f" [95% CI {ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                     + (f" ({c['krippendorff_alpha_note']})" if c["krippendorff_alpha_note"] else ""))
        lines.append(f"  Fleiss kappa {fmt(c['fleiss_kappa'])}" + (f" ({c['fleiss_kappa_note']})" if c["fleiss_kappa_note"] else ""))
        lines.append("  Cohen kappa " + ", ".join(f"{k}: {fmt(v)}" for k, v in c["pairwise_kappa"].items()))
    return "\n".join(lines)


__all__ = [
    "CriterionRatings", "compute_agreement", "criterion_agreement", "from_arrays", "from_study", "load_csv",
    "agreement_for_study", "agreement_for_csv", "group_values", "alpha_from_patterns", "bootstrap_alpha_ci",
    "krippendorff_alpha", "fleiss", "cohen", "infer_scale", "format_table",
]
