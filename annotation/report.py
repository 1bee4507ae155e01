"""Campaign reports: CSV of all ratings, JSON of all figures, self-contained HTML, PDF.

Figures are issue 2 §5 (see :mod:`annotation.agreement`) plus the campaign's facts, each
annotator's progress and gold-item accuracy. Charts are matplotlib (Agg backend, no display):
per-group rating distributions, pass rates per group, and agreement with 95% intervals. The HTML
embeds them as base64 PNG; the PDF is written with ``matplotlib.backends.backend_pdf.PdfPages``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from .agreement import BOOTSTRAP_RESAMPLES, agreement_for_study  # noqa: E402
from .campaigns import get_campaign  # noqa: E402
from .db import Study, StudyError, open_study  # noqa: E402
from .dates import format_date, format_span  # noqa: E402
from .eval_reports import eval_reports  # noqa: E402
from .ratings import all_ratings, gold_report  # noqa: E402
from .scales import format_value  # noqa: E402

Progress = Callable[[int, int], None]
FORMATS = ("csv", "json", "html", "pdf")
GROUP_COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def report_data(study_or_path, campaign: str, *, bootstrap: int = BOOTSTRAP_RESAMPLES,
                progress: Progress | None = None) -> dict:
    """Everything the report shows, as plain JSON-ready data."""
    with open_study(study_or_path) as study:
        camp = get_campaign(study, campaign)
        steps = 3
        members = study.query(
            "SELECT a.name AS annotator, g.name AS 'group',"
            " (SELECT COUNT(*) FROM assignments s WHERE s.annotator_id = m.annotator_id AND s.campaign_id = m.campaign_id) AS assigned,"
            " (SELECT COUNT(*) FROM latest_ratings r WHERE r.annotator_id = m.annotator_id AND r.campaign_id = m.campaign_id) AS ratings,"
            " (SELECT SUM(r.seconds) FROM ratings r WHERE r.annotator_id = m.annotator_id AND r.campaign_id = m.campaign_id) AS seconds"
            " FROM members m JOIN annotators a ON a.id = m.annotator_id JOIN groups g ON g.id = m.group_id"
            " WHERE m.campaign_id = ? ORDER BY g.name, a.name", (camp.id,))
        if progress:
            progress(1, steps)
        agreement = agreement_for_study(study, campaign, bootstrap=bootstrap)
        if progress:
            progress(2, steps)
        facts = {
            "study": str(study.path),
            "campaign": camp.name,
            "preset": camp.preset,
            "unit": camp.unit,
            "overlap": camp.overlap,
            "groups": camp.groups,
            "n_items": camp.n_items,
            "n_gold_items": study.one("SELECT COUNT(*) FROM items WHERE campaign_id = ? AND gold IS NOT NULL", (camp.id,)),
            "n_episodes": study.one("SELECT COUNT(DISTINCT episode_id) FROM items WHERE campaign_id = ?", (camp.id,)),
            "sources": [r["source"] for r in study.query(
                "SELECT DISTINCT e.source FROM items i JOIN episodes e ON e.id = i.episode_id WHERE i.campaign_id = ? ORDER BY 1", (camp.id,))],
            "n_ratings_total": study.one("SELECT COUNT(*) FROM ratings WHERE campaign_id = ?", (camp.id,)),
            "n_ratings_latest": study.one("SELECT COUNT(*) FROM latest_ratings WHERE campaign_id = ?", (camp.id,)),
            "created_at": camp.created_at,
            "closed_at": camp.closed_at,
            "first_rating": study.one("SELECT MIN(created_at) FROM ratings WHERE campaign_id = ?", (camp.id,)),
            "last_rating": study.one("SELECT MAX(created_at) FROM ratings WHERE campaign_id = ?", (camp.id,)),
            "notes": camp.description,
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "bootstrap_resamples": bootstrap,
        }
        data = {
            "facts": facts,
            "criteria": [{"name": c.name, "label": c.label, "scale": c.scale, "target": c.target,
                          "definition": c.definition, "anchors": c.anchors} for c in camp.criteria],
            "annotators": members,
            "gold": gold_report(study, campaign),
            "agreement": agreement,
            "comparisons": comparison_counts(study),
            "eval_reports": [{"id": r.id, "created_at": r.created_at, "campaign": r.campaign, "systems": r.systems,
                              "data": r.data, "title": r.payload.get("title") or "Automatic evaluation",
                              "rows": r.metric_rows()} for r in eval_reports(study, campaign)],
        }
        if progress:
            progress(3, steps)
        return data


def comparison_counts(study: Study) -> list[dict]:
    """Compare-page votes stored in the study, per pair of systems (``a`` < ``b``)."""
    out: dict[tuple[str, str], dict] = {}
    for r in study.query("SELECT left_system, right_system, outcome, voter, COUNT(*) AS n FROM compare_votes"
                         " GROUP BY left_system, right_system, outcome, voter"):
        a, b = sorted((r["left_system"], r["right_system"]))
        row = out.setdefault((a, b), {"a": a, "b": b, "votes": 0, "a_wins": 0, "b_wins": 0, "ties": 0, "both_bad": 0,
                                      "voters": []})
        row["votes"] += r["n"]
        if r["voter"] and r["voter"] not in row["voters"]:
            row["voters"].append(r["voter"])
        if r["outcome"] in ("left", "right"):
            winner = r["left_system"] if r["outcome"] == "left" else r["right_system"]
            row["a_wins" if winner == a else "b_wins"] += r["n"]
        else:
            row["ties" if r["outcome"] == "tie" else "both_bad"] += r["n"]
    return sorted(out.values(), key=lambda x: -x["votes"])


def group_interval(summary: dict, scale: str) -> tuple[float, float] | None:
    """95% interval of a group's mean (Likert: t interval from the rating distribution) or pass rate
    (Wilson score interval, ``statsmodels``); ``None`` with fewer than two ratings."""
    n = summary["n_ratings"]
    if n < 2:
        return None
    if scale == "likert":
        from scipy.stats import t

        if summary["sd"] is None:
            return None
        half = t.ppf(0.975, n - 1) * summary["sd"] / n ** 0.5
        return max(1.0, summary["mean"] - half), min(5.0, summary["mean"] + half)
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(summary["distribution"]["pass"], n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


# --- charts -----------------------------------------------------------------------------------
def _style(ax, title):
    ax.set_title(title, fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def chart_distributions(data: dict):
    """Per-group Likert distributions (share of ratings at each score), one panel per criterion."""
    crits = [(n, c) for n, c in data["agreement"]["criteria"].items() if c["scale"] == "likert"]
    if not crits:
        return None
    cols = min(len(crits), 3)
    rows = (len(crits) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, (name, c) in zip(axes.flat, crits):
        groups = list(c["groups"])
        width = 0.8 / max(len(groups), 1)
        for gi, g in enumerate(groups):
            s = c["groups"][g]
            n = max(s["n_ratings"], 1)
            shares = [s["distribution"][str(v)] / n for v in range(1, 6)]
            ax.bar([v + (gi - (len(groups) - 1) / 2) * width for v in range(1, 6)], shares, width,
                   label=f"group {g}", color=GROUP_COLOURS[gi % len(GROUP_COLOURS)])
        ax.set_xticks(range(1, 6))
        ax.set_xlabel("score")
        ax.set_ylabel("share of ratings")
        ax.set_ylim(0, 1)
        _style(ax, _label(data, name))
    for ax in list(axes.flat)[len(crits):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def chart_pass_rates(data: dict):
    """Pass rate per group for each pass/fail criterion (MiSC Table 3 as a chart)."""
    crits = [(n, c) for n, c in data["agreement"]["criteria"].items() if c["scale"] == "passfail"]
    if not crits:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 2.2 * len(crits)), 3.2))
    groups = list(crits[0][1]["groups"])
    width = min(0.8 / max(len(groups), 1), 0.22)
    ax.set_xlim(-0.6, len(crits) - 0.4)
    for gi, g in enumerate(groups):
        xs = [i + (gi - (len(groups) - 1) / 2) * width for i in range(len(crits))]
        rates = [c["groups"][g]["pass_rate"] or 0.0 for _, c in crits]
        bars = ax.bar(xs, rates, width, label=f"group {g}", color=GROUP_COLOURS[gi % len(GROUP_COLOURS)])
        for b, (_, c) in zip(bars, crits):
            r = c["groups"][g]["pass_rate"]
            ax.annotate("—" if r is None else f"{r:.0%}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(crits)))
    ax.set_xticklabels([_label(data, n) for n, _ in crits], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("pass rate")
    ax.legend(fontsize=8, frameon=False, ncol=len(groups), loc="upper left")
    _style(ax, "Pass rate per group")
    fig.tight_layout()
    return fig


def chart_agreement(data: dict):
    """Cross-group agreement and Krippendorff's α (with its bootstrap 95% interval) per criterion."""
    crits = list(data["agreement"]["criteria"].items())
    if not crits:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(crits)), 3.4))
    xs = range(len(crits))
    agree = [c["cross_group_agreement"] for _, c in crits]
    ax.bar([x - 0.2 for x in xs], [a or 0 for a in agree], 0.4, color="#8da0cb", label="cross-group agreement")
    for x, a in zip(xs, agree):
        ax.annotate("n/a" if a is None else f"{a:.2f}", (x - 0.2, a or 0), ha="center", va="bottom", fontsize=7)
    for x, (_, c) in zip(xs, crits):
        a, ci = c["krippendorff_alpha"], c["krippendorff_alpha_ci"]
        if a is None:
            ax.annotate("α n/a", (x + 0.2, 0.02), ha="center", fontsize=7)
            continue
        err = [[a - ci[0]], [ci[1] - a]] if ci else None
        ax.errorbar([x + 0.2], [a], yerr=err, fmt="o", color="#1b9e77", capsize=4,
                    label="Krippendorff's α (95% CI)" if x == 0 or not ax.get_legend_handles_labels()[1][1:] else None)
        ax.annotate(f"{a:.2f}", (x + 0.2, a), textcoords="offset points", xytext=(8, -3), fontsize=7)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlim(-0.7, len(crits) - 0.3)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([_label(data, n) for n, _ in crits], fontsize=8, rotation=0)
    lo = min([0] + [c["krippendorff_alpha_ci"][0] for _, c in crits if c["krippendorff_alpha_ci"]])
    ax.set_ylim(min(lo - 0.05, 0), 1.12)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, frameon=False, loc="upper left", ncol=2)
    _style(ax, "Agreement across groups")
    fig.tight_layout()
    return fig


CHARTS = (("Rating distributions per group", chart_distributions),
          ("Pass rates per group", chart_pass_rates),
          ("Agreement with 95% intervals", chart_agreement))


def _label(data, name):
    return next((c["label"] for c in data["criteria"] if c["name"] == name), name)


# --- tables -----------------------------------------------------------------------------------
def _fmt(x, pct=False):
    if x is None:
        return "n/a"
    return f"{x:.1%}" if pct else f"{x:.3f}"


def group_table(data: dict) -> tuple[list[str], list[list[str]]]:
    head = ["Criterion", "Group", "Annotators", "Items", "Ratings", "Mean (SD) / pass rate", "95% interval", "Distribution"]
    rows = []
    for name, c in data["agreement"]["criteria"].items():
        for g, s in list(c["groups"].items()) + [("all", c["overall"])]:
            ci = group_interval(s, c["scale"])
            if c["scale"] == "likert":
                main = "n/a" if s["mean"] is None else f"{s['mean']:.2f} ({s['sd']:.2f})" if s["sd"] is not None else f"{s['mean']:.2f}"
                dist = " ".join(f"{k}:{v}" for k, v in s["distribution"].items())
                interval = f"{ci[0]:.2f} – {ci[1]:.2f}" if ci else "—"
            else:
                main = _fmt(s["pass_rate"], pct=True)
                dist = f"pass {s['distribution']['pass']} / fail {s['distribution']['fail']}"
                interval = f"{ci[0]:.0%} – {ci[1]:.0%}" if ci else "—"
            rows.append([_label(data, name), g, str(s["n_annotators"]), str(s["n_items"]), str(s["n_ratings"]), main,
                         interval, dist])
    return head, rows


def agreement_table(data: dict) -> tuple[list[str], list[list[str]]]:
    head = ["Criterion", "Scale", "Items (all groups)", "Agreement", "Within 1", "Krippendorff α [95% CI]",
            "Fleiss κ", "Cohen κ between groups"]
    rows = []
    for name, c in data["agreement"]["criteria"].items():
        ci = c["krippendorff_alpha_ci"]
        alpha = _fmt(c["krippendorff_alpha"]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        if c["krippendorff_alpha"] is None and c.get("krippendorff_alpha_note"):
            alpha = f"n/a ({c['krippendorff_alpha_note']})"
        fleiss = _fmt(c["fleiss_kappa"]) if c["fleiss_kappa"] is not None else f"n/a ({c['fleiss_kappa_note']})"
        kappas = ", ".join(f"{k}: {_fmt(v)}" for k, v in c["pairwise_kappa"].items()) or "n/a"
        rows.append([_label(data, name), "Likert 1–5" if c["scale"] == "likert" else "pass/fail",
                     f"{c['n_items_all_groups']} / {c['n_items']}", _fmt(c["cross_group_agreement"], pct=True),
                     _fmt(c["agreement_within_1"], pct=True) if c["scale"] == "likert" else "—", alpha, fleiss, kappas])
    return head, rows


def agreement_table_compact(data: dict) -> tuple[list[str], list[list[str]], list[list[str]], list[str]]:
    """The agreement table for a screen: short cells (notes and definitions go to tooltips), one
    Cohen's κ column per pair of groups. Returns ``head, rows, tips, head_tips``."""
    crits = list(data["agreement"]["criteria"].items())
    pairs = list(dict.fromkeys(k for _, c in crits for k in c["pairwise_kappa"]))
    head = ["Criterion", "Scale", "Items", "Agreement", "Within 1", "Krippendorff α", "95% CI", "Fleiss κ"] + \
        [f"κ {p}" for p in pairs]
    head_tips = ["", "", "Items rated by every group / all items", "Share of items whose group values match across "
                 "all groups (MiSC §5.1)", "Likert: share with max − min ≤ 1 across groups",
                 "Krippendorff's α over annotators (ordinal for Likert, nominal for pass/fail)",
                 "Percentile bootstrap over items", "Fleiss' κ: needs the same number of ratings on every item"] + \
        [f"Cohen's κ between the values of groups {p.replace('|', ' and ')}" for p in pairs]
    rows, tips = [], []
    for name, c in crits:
        ci = c["krippendorff_alpha_ci"]
        alpha_note = c.get("krippendorff_alpha_note") or ""
        fleiss_note = c.get("fleiss_kappa_note") or ""
        crit = next((x for x in data["criteria"] if x["name"] == name), {})
        row = [_label(data, name), "1–5" if c["scale"] == "likert" else "pass/fail",
               f"{c['n_items_all_groups']} / {c['n_items']}", _fmt(c["cross_group_agreement"], pct=True),
               _fmt(c["agreement_within_1"], pct=True) if c["scale"] == "likert" else "—",
               _fmt(c["krippendorff_alpha"]) + ("*" if alpha_note and c["krippendorff_alpha"] is None else ""),
               f"{ci[0]:.3f} – {ci[1]:.3f}" if ci else "—",
               _fmt(c["fleiss_kappa"]) + ("*" if fleiss_note and c["fleiss_kappa"] is None else "")]
        row += [_fmt(c["pairwise_kappa"].get(p)) for p in pairs]
        tip = [crit.get("definition", ""), "", "", "", "", alpha_note, "", fleiss_note] + [""] * len(pairs)
        rows.append(row)
        tips.append([t or v for t, v in zip(tip, row)])
    return head, rows, tips, head_tips


def eval_table(report: dict) -> tuple[list[str], list[list[str]]]:
    """One automatic-evaluation report as rows: system, metric, value, 95% interval, n."""
    head = ["System", "Metric", "Value", "95% interval", "n"]
    rows = []
    for r in report["rows"]:
        interval = f"{r['low']:.3f} – {r['high']:.3f}" if r["low"] is not None and r["high"] is not None else "—"
        rows.append([r["system"], r["metric"], "n/a" if r["value"] is None else f"{r['value']:.3f}", interval,
                     "—" if r["n"] is None else str(r["n"])])
    return head, rows


def annotator_table(data: dict) -> tuple[list[str], list[list[str]]]:
    head = ["Annotator", "Group", "Items assigned", "Ratings given", "Minutes", "Gold correct"]
    rows = []
    for a in data["annotators"]:
        g = data["gold"].get(a["annotator"])
        rows.append([a["annotator"], a["group"], str(a["assigned"]), str(a["ratings"]),
                     f"{(a['seconds'] or 0) / 60:.1f}",
                     f"{g['correct']}/{g['answered']} ({g['accuracy']:.0%})" if g else "—"])
    return head, rows


def facts_rows(data: dict) -> list[tuple[str, str]]:
    f = data["facts"]
    return [
        ("Study", f["study"]), ("Campaign", f["campaign"]), ("Preset", f["preset"]), ("Unit", f["unit"]),
        ("Groups", ", ".join(f["groups"])), ("Overlap within a group", f["overlap"]),
        ("Items", f"{f['n_items']} ({f['n_gold_items']} gold) from {f['n_episodes']} episodes"),
        ("Sources", ", ".join(s or "—" for s in f["sources"])),
        ("Annotators", str(len(data["annotators"]))),
        ("Ratings", f"{f['n_ratings_latest']} counted ({f['n_ratings_total']} rows incl. edits)"),
        ("Created", format_date(f["created_at"])),
        ("Rating period", format_span(f.get("first_rating"), f.get("last_rating")) if f.get("first_rating") else "no ratings yet"),
        ("Rating closed", format_date(f["closed_at"]) if f.get("closed_at") else "open"),
        ("Report generated", format_date(f["generated_at"])),
        ("Bootstrap", f"{f['bootstrap_resamples']} resamples of items, fixed seed"),
    ] + ([("Notes", f["notes"])] if f.get("notes") else [])


# --- writers ----------------------------------------------------------------------------------
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A CSV cell safe to open in a spreadsheet (OWASP "CSV Injection"): text beginning with
    ``=``, ``+``, ``-``, ``@``, tab or carriage return is prefixed with a single quote, so it is
    shown as text instead of run as a formula. Numbers are written as they are."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def write_csv(study: Study, campaign: str, out: Path) -> Path:
    camp = get_campaign(study, campaign)
    rows = all_ratings(study, camp)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["rating_id", "item", "criterion", "annotator", "group", "value", "seconds", "created_at",
                    "origin", "gold_item", "latest", "comment"])
        for r in rows:
            w.writerow([csv_cell(x) for x in (
                r["id"], r["item"], r["criterion"], r["annotator"], r["group"], format_value(r["scale"], r["value"]),
                r["seconds"], r["created_at"], r["origin"], r["gold"], r["latest"], r["comment"])])
    os.replace(tmp, out)
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _html_table(head, rows) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}tbody tr:nth-child(even){background:#fafbfc}
.facts td:first-child{width:14rem;color:#555}.muted{color:#666;font-size:.85rem}
img{max-width:100%;margin:.5rem 0}.anchors{margin:.2rem 0 .6rem;padding-left:1.2rem}dl{font-size:.85rem}dt{font-weight:600;margin-top:.5rem}
"""


def render_html(data: dict) -> str:
    f = data["facts"]
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>MemLab report — {html.escape(f['campaign'])}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>Annotation report: {html.escape(f['campaign'])}</h1>",
             "<p class='muted'>MiSC human-evaluation protocol: independent groups; agreement = share of items whose "
             "group values (median rounded down / majority, ties fail) match across all groups.</p>",
             "<h2>Campaign</h2><table class='facts'><tbody>",
             "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts_rows(data)),
             "</tbody></table>", "<h2>Criteria</h2><dl>"]
    for c in data["criteria"]:
        anchors = "".join(f"<li><b>{html.escape(k)}</b> {html.escape(v)}</li>" for k, v in c["anchors"].items())
        parts.append(f"<dt>{html.escape(c['label'])} <span class='muted'>({c['scale']}, per {c['target']})</span></dt>"
                     f"<dd>{html.escape(c['definition'])}<ul class='anchors muted'>{anchors}</ul></dd>")
    parts.append("</dl><h2>Agreement</h2>")
    parts.append(_html_table(*agreement_table(data)))
    for rep in data.get("eval_reports", []):
        parts.append(f"<h2>{html.escape(rep['title'])} <span class='muted'>(automatic, report {rep['id']}, "
                     f"{html.escape(rep['data'])})</span></h2>")
        parts.append(_html_table(*eval_table(rep)))
    if data.get("comparisons"):
        parts.append("<h2>Side-by-side comparisons <span class='muted'>(Compare page votes stored in this study)</span></h2>")
        parts.append(_html_table(*comparison_table(data)))
    parts.append("<h2>Groups</h2>")
    parts.append(_html_table(*group_table(data)))
    parts.append("<h2>Annotators</h2>")
    parts.append(_html_table(*annotator_table(data)))
    parts.append("<h2>Charts</h2>")
    for title, fn in CHARTS:
        fig = fn(data)
        if fig is not None:
            parts.append(f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' src='data:image/png;base64,{_png(fig)}'>")
    parts.append("</body></html>")
    return "".join(parts)


A4 = (8.27, 11.69)  # portrait, inches
MARGIN = 0.07


class _Page:
    """One portrait A4 page laid out top to bottom: headings, paragraphs, tables and charts."""

    def __init__(self, pdf, data: dict, number: list[int]):
        self.pdf, self.data, self.number = pdf, data, number
        self.fig = plt.figure(figsize=A4)
        self.y = 1 - MARGIN
        number[0] += 1
        f = data["facts"]
        self.fig.text(MARGIN, 0.03, f"MemLab · {f['campaign']} · {format_date(f['generated_at'], time=False)}",
                      fontsize=7, color="#777")
        self.fig.text(1 - MARGIN, 0.03, f"page {number[0]}", fontsize=7, color="#777", ha="right")

    def room(self) -> float:
        return self.y - 0.06

    def heading(self, text: str, size: int = 14) -> None:
        self.fig.text(MARGIN, self.y, text, fontsize=size, weight="bold", va="top")
        self.y -= 0.012 * size / 10 + 0.022

    def para(self, text: str, size: float = 8.5, width: int = 118, colour: str = "#333") -> None:
        wrapped = _wrap(text, width)
        self.fig.text(MARGIN, self.y, wrapped, fontsize=size, va="top", color=colour, linespacing=1.35)
        self.y -= (wrapped.count("\n") + 1) * size * 0.00205 + 0.008

    def table(self, head: list[str] | None, rows: list[list[str]], widths: list[float], size: float = 7.5) -> list[list[str]]:
        """Draw as many rows as fit; returns the rows left over (for the next page)."""
        total = sum(widths)
        xs, x = [], MARGIN
        for w in widths:
            xs.append(x)
            x += (1 - 2 * MARGIN) * w / total
        # characters that fit in each column at this size (DejaVu Sans averages ~0.6 em per character)
        chars = [max(int((1 - 2 * MARGIN) * A4[0] * 72 / (0.6 * size) * (w / total)) - 2, 3) for w in widths]
        line_h = size * 0.0021

        def draw(cells, bold=False, shade=None):
            wrapped = [_wrap(c, n) for c, n in zip(cells, chars)]
            lines = max(w.count("\n") + 1 for w in wrapped)
            h = lines * line_h + 0.006
            if shade:
                self.fig.patches.append(matplotlib.patches.Rectangle(
                    (MARGIN, self.y - h + 0.002), 1 - 2 * MARGIN, h, transform=self.fig.transFigure,
                    facecolor=shade, edgecolor="none", zorder=0))
            for xx, w in zip(xs, wrapped):
                self.fig.text(xx + 0.003, self.y - 0.002, w, fontsize=size, va="top", weight="bold" if bold else None,
                              linespacing=1.25)
            self.y -= h
            line = matplotlib.lines.Line2D([MARGIN, 1 - MARGIN], [self.y + 0.001] * 2, transform=self.fig.transFigure,
                                           color="#c8ccd2", lw=0.5)
            self.fig.lines.append(line)

        if head:
            draw(head, bold=True, shade="#e8ecf2")
        for i, r in enumerate(rows):
            need = (max(_wrap(c, n).count("\n") + 1 for c, n in zip(r, chars))) * line_h + 0.006
            if self.y - need < 0.06:
                return rows[i:]
            draw(r, shade="#f7f8fa" if i % 2 else None)
        self.y -= 0.012
        return []

    def chart(self, fig_chart, height: float) -> None:
        """Paste a matplotlib figure as an image ``height`` (figure fraction) tall at the current place."""
        buf = io.BytesIO()
        fig_chart.savefig(buf, format="png", dpi=170)
        plt.close(fig_chart)
        buf.seek(0)
        img = plt.imread(buf)
        h_px, w_px = img.shape[:2]
        width = 1 - 2 * MARGIN
        aspect = (h_px / w_px) * (A4[0] / A4[1])
        h = min(height, width * aspect)
        w = h / aspect
        ax = self.fig.add_axes([MARGIN + (width - w) / 2, self.y - h, w, h])
        ax.imshow(img)
        ax.axis("off")
        self.y -= h + 0.015

    def finish(self) -> None:
        self.pdf.savefig(self.fig)
        plt.close(self.fig)


def chart_group_means(data: dict):
    """Per criterion, each group's mean (Likert) or pass rate with its 95% interval."""
    crits = list(data["agreement"]["criteria"].items())
    if not crits:
        return None
    cols = min(len(crits), 3)
    rows = (len(crits) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 2.3 * rows), squeeze=False)
    for ax, (name, c) in zip(axes.flat, crits):
        groups = list(c["groups"]) + ["all"]
        summaries = [c["groups"][g] for g in c["groups"]] + [c["overall"]]
        likert = c["scale"] == "likert"
        vals, errs = [], [[], []]
        for s_ in summaries:
            v = s_["mean"] if likert else s_["pass_rate"]
            ci = group_interval(s_, c["scale"])
            vals.append(v if v is not None else float("nan"))
            errs[0].append((v - ci[0]) if (ci and v is not None) else 0)
            errs[1].append((ci[1] - v) if (ci and v is not None) else 0)
        colours = [GROUP_COLOURS[i % len(GROUP_COLOURS)] for i in range(len(groups) - 1)] + ["#555555"]
        ax.bar(range(len(groups)), vals, yerr=errs, color=colours, capsize=3, width=0.6,
               error_kw={"elinewidth": 1, "ecolor": "#222"})
        base = 1 if likert else 0
        for x, v in enumerate(vals):  # the value inside the bar's foot, clear of the interval's caps
            if v == v:
                ax.annotate(f"{v:.2f}" if likert else f"{v:.0%}", (x, base), textcoords="offset points", xytext=(0, 3),
                            ha="center", va="bottom", fontsize=7, color="white", weight="bold")
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{g}" for g in groups], fontsize=8)
        ax.set_ylim((1, 5.4) if likert else (0, 1.12))
        ax.set_ylabel("mean (1–5)" if likert else "pass rate", fontsize=8)
        _style(ax, _label(data, name))
    for ax in list(axes.flat)[len(crits):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def write_pdf(data: dict, out: Path) -> Path:
    """A report to print: title page (study, campaign, dates, annotators, criteria), agreement
    (table and chart), per-criterion charts with per-group means and 95% intervals, the tables, and
    automatic evaluation and comparisons when the study holds them. Portrait A4."""
    tmp = out.with_name(out.name + ".tmp")
    f = data["facts"]
    number = [0]
    with PdfPages(tmp) as pdf:
        # 1 — title page
        p = _Page(pdf, data, number)
        p.y = 0.86
        p.fig.text(MARGIN, p.y, "Annotation report", fontsize=26, weight="bold", va="top")
        p.y -= 0.055
        p.fig.text(MARGIN, p.y, f"Campaign “{f['campaign']}”", fontsize=16, va="top")
        p.y -= 0.04
        period = format_span(f.get("first_rating"), f.get("last_rating")) if f.get("first_rating") else "no ratings yet"
        p.fig.text(MARGIN, p.y, f"Study {Path(f['study']).name} · rated {period} · "
                                f"{len(data['annotators'])} annotators in {len(f['groups'])} groups",
                   fontsize=11, va="top", color="#444")
        p.y -= 0.05
        rows = [[k, v] for k, v in facts_rows(data) if k not in ("Campaign",)]
        p.table(None, rows, [22, 78], size=8.5)
        p.heading("Annotators", 12)
        by_group: dict[str, list[str]] = {}
        for a in data["annotators"]:
            by_group.setdefault(a["group"], []).append(f"{a['annotator']} ({a['ratings']} ratings)")
        for g, names in by_group.items():
            p.para(f"Group {g}: " + ", ".join(names), size=8.5)
        if not by_group:
            p.para("No annotators yet.")
        p.heading("Criteria", 12)
        for c in data["criteria"]:
            p.para(f"{c['label']} ({'Likert 1–5' if c['scale'] == 'likert' else 'pass / fail'}, per {c['target']}): "
                   f"{c['definition']}", size=8)
        p.finish()

        # 2 — agreement
        p = _Page(pdf, data, number)
        p.heading("Agreement across groups")
        p.para("Agreement: share of items whose group values (median rounded down for Likert, majority for pass/fail "
               "with ties as fail) are equal across all groups, over items every group rated (MiSC §5.1). "
               f"Krippendorff's α with a percentile bootstrap over items ({f['bootstrap_resamples']} resamples); "
               "Fleiss' κ where every item has the same number of ratings; Cohen's κ between each pair of groups.")
        head, rows, tips, _ = agreement_table_compact(data)
        head = [h.replace("Krippendorff α", "Kripp. α") for h in head]
        left = p.table(head, rows, [19, 11, 8, 10, 7, 7, 16, 7] + [7] * (len(head) - 8), size=7)
        notes = sorted({t for r, row in enumerate(rows) for c, t in enumerate(tips[r]) if row[c].endswith("*")})
        for n in notes:
            p.para("* " + n, size=7.5, colour="#555")
        fig = chart_agreement(data)
        if fig is not None:
            p.chart(fig, min(0.3, p.room()))

        # per-criterion charts: group means / pass rates with intervals, then Likert distributions
        for title, note, fn, height in (
                ("Per criterion: group means and pass rates with 95% intervals",
                 "Each group's mean rating (Likert; t interval) or pass rate (pass/fail; Wilson interval); "
                 "‘all’ pools the groups.", chart_group_means, 0.34),
                ("Per criterion: rating distributions per group", "Share of each group's ratings at each score.",
                 chart_distributions, 0.34)):
            fig = fn(data)
            if fig is None:
                continue
            if p.room() < 0.22:
                p.finish()
                p = _Page(pdf, data, number)
            p.heading(title, 12)
            p.para(note, size=8)
            p.chart(fig, min(height, p.room()))
        p.finish()

        # 4 — tables
        p = _Page(pdf, data, number)
        p.heading("Per group")
        head, rows = group_table(data)
        widths = [22, 6, 10, 6, 8, 14, 12, 22]
        left = p.table(head, rows, widths, size=7)
        while left:
            p.finish()
            p = _Page(pdf, data, number)
            p.heading("Per group (continued)")
            left = p.table(head, left, widths, size=7)
        if p.room() < 0.15:
            p.finish()
            p = _Page(pdf, data, number)
        p.heading("Annotators")
        head, rows = annotator_table(data)
        left = p.table(head, rows, [24, 8, 12, 12, 10, 16], size=7.5)
        while left:
            p.finish()
            p = _Page(pdf, data, number)
            p.heading("Annotators (continued)")
            left = p.table(head, left, [24, 8, 12, 12, 10, 16], size=7.5)
        # then automatic evaluation and comparisons, when the study holds them (same page while there is room)
        if data.get("eval_reports") or data.get("comparisons"):
            if p.room() < 0.2:
                p.finish()
                p = _Page(pdf, data, number)
            for rep in data.get("eval_reports", []):
                if p.room() < 0.12:
                    p.finish()
                    p = _Page(pdf, data, number)
                p.heading(f"{rep['title']} (automatic)", 12)
                p.para(f"Report {rep['id']} of {format_date(rep['created_at'])} · systems {', '.join(rep['systems'])} · "
                       f"{rep['data']}", size=8)
                head, rows = eval_table(rep)
                left = p.table(head, rows, [20, 26, 12, 22, 8], size=7.5)
                while left:
                    p.finish()
                    p = _Page(pdf, data, number)
                    left = p.table(head, left, [20, 26, 12, 22, 8], size=7.5)
            if data.get("comparisons"):
                if p.room() < 0.12:
                    p.finish()
                    p = _Page(pdf, data, number)
                p.heading("Side-by-side comparisons (Compare page votes)", 12)
                head, rows = comparison_table(data)
                p.table(head, rows, [26, 8, 10, 11, 7, 8, 30], size=7.5)
        p.finish()
        info = pdf.infodict()
        info["Title"] = f"MemLab annotation report: {f['campaign']}"
        info["Creator"] = "MemLab"
    os.replace(tmp, out)
    return out


def comparison_table(data: dict) -> tuple[list[str], list[list[str]]]:
    head = ["Pair", "Votes", "First wins", "Second wins", "Ties", "Both bad", "Voters"]
    return head, [[f"{c['a']} vs {c['b']}", str(c["votes"]), str(c["a_wins"]), str(c["b_wins"]), str(c["ties"]),
                   str(c["both_bad"]), ", ".join(c.get("voters") or []) or "—"] for c in data.get("comparisons", [])]


def _wrap(text, width):
    import textwrap

    out = []
    for para in str(text).split("\n"):
        out.extend(textwrap.wrap(para, width=max(int(width), 4)) or [""])
    return "\n".join(out)


def write_report(study_or_path, campaign: str, out, *, bootstrap: int = BOOTSTRAP_RESAMPLES,
                 progress: Progress | None = None) -> Path:
    """Write the report whose format the suffix of ``out`` names (.csv, .json, .html, .pdf)."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise StudyError(f"report format comes from the file name: use .csv, .json, .html or .pdf, not {out.name!r}")
    with open_study(study_or_path) as study:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            get_campaign(study, campaign)
            path = write_csv(study, campaign, out)
            if progress:
                progress(1, 1)
            return path
        data = report_data(study, campaign, bootstrap=bootstrap, progress=progress)
        if fmt == "json":
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, out)
        elif fmt == "html":
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(render_html(data), encoding="utf-8")
            os.replace(tmp, out)
        else:
            write_pdf(data, out)
        return out
