"""The comparison table of ``memlab eval compare``: Markdown and a matplotlib chart (values ×100, 95%
bootstrap intervals), from the result of :func:`engine.evaluation.compare.score`."""

from __future__ import annotations

from pathlib import Path

from engine.metrics.responses import METRIC_KEYS

LABELS = {"bleu1": "BLEU-1", "rouge1": "ROUGE-1", "rougeL": "ROUGE-L", "c_dist1": "C-Dist-1",
          "c_dist2": "C-Dist-2", "s_dist1": "S-Dist-1", "s_dist2": "S-Dist-2", "persona_f1": "Persona-F1",
          "con_s": "Con.S", "coh_con_s": "Coh-Con.S"}


def metric_keys(result: dict) -> list[str]:
    present = {k for d in result["systems"].values() for k in d}
    return [k for k in METRIC_KEYS if k in present]


def markdown_table(result: dict, title: str = "") -> str:
    keys = metric_keys(result)
    lines = []
    if title:
        lines += [f"**{title}** (n = {result['n']} held-out turns; ×100, 95% bootstrap interval)", ""]
    lines.append("| system | " + " | ".join(LABELS[k] for k in keys) + " | s / query | s / user history |")
    lines.append("|---|" + "---|" * (len(keys) + 2))
    meta = result.get("meta", {})
    for name, d in result["systems"].items():
        cells = []
        for k in keys:
            if k not in d:
                cells.append("–")
                continue
            lo, hi = d.get(f"{k}_ci", (None, None))
            ci = f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else ""
            cells.append(f"{100 * d[k]:.1f}{ci}")
        m = meta.get(name, {})
        fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
        cells += [fmt(m.get("answer_s_mean")), fmt(m.get("ingest_s_mean"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, m in meta.items():
        if m.get("failed"):
            lines.append(f"\n{name}: not in the table — {m['failed']}")
        for note in m.get("notes", []):
            lines.append(f"\n{name}: {note}")
    return "\n".join(lines) + "\n"


def chart(result: dict, path: str | Path, title: str = "") -> Path:
    """One panel per metric, one bar per system with its 95% interval; written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = metric_keys(result)
    names = list(result["systems"])
    cols = min(5, max(1, len(keys)))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.6, 2.6 * rows + 0.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, k in zip(axes.flat, keys):
        vals, errs = [], [[], []]
        for n in names:
            d = result["systems"][n]
            v = 100 * d.get(k, float("nan"))
            lo, hi = d.get(f"{k}_ci", (None, None))
            vals.append(v)
            errs[0].append(v - 100 * lo if lo is not None else 0)
            errs[1].append(100 * hi - v if hi is not None else 0)
        ax.bar(range(len(names)), vals, yerr=errs, capsize=3, color=[colors[i % len(colors)] for i in range(len(names))])
        ax.set_title(LABELS[k], fontsize=10)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle((title + " — " if title else "") + f"n = {result['n']} held-out turns (×100, 95% bootstrap CI)",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
