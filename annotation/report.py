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
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from .agreement import BOOTSTRAP_RESAMPLES, agreement_for_study  # noqa: E402
from .campaigns import get_campaign  # noqa: E402
from .db import Study, StudyError, open_study  # noqa: E402
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
            "eval_reports": [{"id": r.id, "created_at": r.created_at, "campaign": r.campaign, "systems": r.systems,
                              "data": r.data, "title": r.payload.get("title") or "Automatic evaluation",
                              "rows": r.metric_rows()} for r in eval_reports(study, campaign)],
        }
        if progress:
            progress(3, steps)
        return data


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
    head = ["Criterion", "Group", "Annotators", "Items", "Ratings", "Mean ± SD / pass rate", "Distribution"]
    rows = []
    for name, c in data["agreement"]["criteria"].items():
        for g, s in list(c["groups"].items()) + [("all", c["overall"])]:
            if c["scale"] == "likert":
                main = "n/a" if s["mean"] is None else f"{s['mean']:.2f} ± {s['sd']:.2f}" if s["sd"] is not None else f"{s['mean']:.2f}"
                dist = " ".join(f"{k}:{v}" for k, v in s["distribution"].items())
            else:
                main = _fmt(s["pass_rate"], pct=True)
                dist = f"pass {s['distribution']['pass']} / fail {s['distribution']['fail']}"
            rows.append([_label(data, name), g, str(s["n_annotators"]), str(s["n_items"]), str(s["n_ratings"]), main, dist])
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
        ("Created", f["created_at"]), ("Report generated", f["generated_at"]),
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


def _table_page(pdf, title, head, rows, col_widths, rows_per_page=18, font=9):
    """A4-landscape pages with a clean table: wrapped cells, one height per row, shaded header."""
    scale = 118 / sum(col_widths)  # characters that fit across the page at this font size
    chars = [max(int(w * scale), 6) for w in col_widths]
    line_h = 0.034
    for start in range(0, max(len(rows), 1), rows_per_page):
        chunk = rows[start:start + rows_per_page]
        fig = plt.figure(figsize=(11.69, 8.27))
        fig.text(0.05, 0.93, title + (" (continued)" if start else ""), fontsize=15, weight="bold")
        ax = fig.add_axes([0.05, 0.05, 0.9, 0.84])
        ax.axis("off")
        if not chunk:
            ax.text(0, 1, "nothing to show yet", va="top", fontsize=10, color="#555")
        else:
            cells = [[_wrap(x, c) for x, c in zip(r, chars)] for r in chunk]
            header = [_wrap(x, c) for x, c in zip(head, chars)]
            t = ax.table(cellText=cells, colLabels=header, loc="upper left", cellLoc="left", colLoc="left",
                         colWidths=[w / sum(col_widths) for w in col_widths])
            t.auto_set_font_size(False)
            t.set_fontsize(font)
            all_rows = [header] + cells
            for (r, _c), cell in t.get_celld().items():
                lines = max(x.count("\n") + 1 for x in all_rows[r])
                cell.set_height(line_h * lines + 0.012)
                cell.set_edgecolor("#c8ccd2")
                cell.PAD = 0.04
                if r == 0:
                    cell.set_facecolor("#e8ecf2")
                    cell.get_text().set_weight("bold")
                elif r % 2 == 0:
                    cell.set_facecolor("#f7f8fa")
        pdf.savefig(fig)
        plt.close(fig)


def _wrap(text, width):
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width=max(int(width), 8))) or ""


def write_pdf(data: dict, out: Path) -> Path:
    tmp = out.with_name(out.name + ".tmp")
    with PdfPages(tmp) as pdf:
        fig = plt.figure(figsize=(11.69, 8.27))
        fig.text(0.06, 0.88, "MemLab annotation report", fontsize=24, weight="bold")
        fig.text(0.06, 0.83, f"Campaign “{data['facts']['campaign']}”", fontsize=16)
        y = 0.74
        for k, v in facts_rows(data):
            fig.text(0.06, y, k, fontsize=10, color="#555")
            fig.text(0.30, y, _wrap(v, 95), fontsize=10, va="top" if "\n" in _wrap(v, 95) else "baseline")
            y -= 0.04 * (_wrap(v, 95).count("\n") + 1)
        y -= 0.02
        fig.text(0.06, y, "Criteria", fontsize=12, weight="bold")
        y -= 0.04
        for c in data["criteria"]:
            text = _wrap(f"{c['label']} ({c['scale']}, per {c['target']}): {c['definition']}", 130)
            fig.text(0.06, y, text, fontsize=9, va="top")
            y -= 0.03 * (text.count("\n") + 1) + 0.01
        pdf.savefig(fig)
        plt.close(fig)
        head, rows = agreement_table(data)
        _table_page(pdf, "Agreement per criterion", head, rows, [16, 9, 10, 10, 8, 22, 18, 25], rows_per_page=8)
        head, rows = group_table(data)
        _table_page(pdf, "Group summaries", head, rows, [18, 6, 9, 7, 8, 14, 28], rows_per_page=16)
        head, rows = annotator_table(data)
        _table_page(pdf, "Annotators", head, rows, [24, 10, 10, 10, 10, 18], rows_per_page=18)
        for title, fn in CHARTS:
            chart = fn(data)
            if chart is None:
                continue
            w, h = chart.get_size_inches()
            chart.set_size_inches(min(11.69, w * 1.5), min(8.27, h * 1.5))
            chart.suptitle(title, x=0.02, ha="left", fontsize=14, weight="bold")
            chart.tight_layout(rect=(0.02, 0.02, 0.98, 0.93))
            pdf.savefig(chart)
            plt.close(chart)
        info = pdf.infodict()
        info["Title"] = f"MemLab annotation report: {data['facts']['campaign']}"
        info["Creator"] = "MemLab"
    os.replace(tmp, out)
    return out


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
