"""Agreement charts for a campaign (matplotlib in a Qt canvas), drawn from the report's numbers.

Two panels, side by side, one bar group per criterion:

* left — each group's mean score (Likert 1–5) or pass rate (pass/fail, shown on the same 0–5
  axis as pass rate × 5 would mislead, so pass/fail criteria get their own 0–100 % axis labels
  in the bar text instead);
* right — the agreement measures: share of items whose ratings match across all groups (MiSC
  protocol, EMMA paper §3.4), Krippendorff's α, Fleiss' κ.

The canvas is created lazily by the Studies page, so importing ``desktop`` does not import
matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

GROUP_COLOURS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280")
MEASURE_COLOURS = {"agreement": "#4a5568", "alpha": "#d69e2e", "kappa": "#319795"}


@dataclass
class CriterionFigures:
    """The numbers the chart draws for one criterion (all straight from the agreement report)."""

    name: str
    kind: str  # "likert" or "pass_fail"
    group_values: dict[str, float | None] = field(default_factory=dict)  # mean (likert) or pass rate
    agreement: float | None = None  # share of items with matching ratings across groups
    alpha: float | None = None
    kappa: float | None = None


class AgreementChart(FigureCanvasQTAgg):
    def __init__(self, parent=None):
        self.figure = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.setMinimumHeight(240)
        self.plotted: list[CriterionFigures] = []

    def plot(self, criteria: list[CriterionFigures]) -> None:
        self.figure.clear()
        self.plotted = list(criteria)
        if not criteria:
            ax = self.figure.add_subplot(111)
            ax.set_axis_off()
            ax.text(0.5, 0.5, "No ratings yet", ha="center", va="center", fontsize=11, color="#666666")
            self.draw_idle()
            return
        left, right = self.figure.subplots(1, 2)
        names = [c.name for c in criteria]
        groups = sorted({g for c in criteria for g in c.group_values})
        self._plot_groups(left, criteria, names, groups)
        self._plot_measures(right, criteria, names)
        self.draw_idle()

    @staticmethod
    def _normalised(c: CriterionFigures, v: float | None) -> float:
        """Likert means on 0–1 as (mean-1)/4; pass rates are already 0–1."""
        if v is None:
            return 0.0
        return (v - 1.0) / 4.0 if c.kind == "likert" else v

    def _plot_groups(self, ax, criteria, names, groups):
        n = max(len(groups), 1)
        width = 0.8 / n
        for gi, g in enumerate(groups):
            xs = [i + (gi - (n - 1) / 2) * width for i in range(len(criteria))]
            ys = [self._normalised(c, c.group_values.get(g)) for c in criteria]
            bars = ax.bar(xs, ys, width, label=g, color=GROUP_COLOURS[gi % len(GROUP_COLOURS)])
            for bar, c in zip(bars, criteria):
                v = c.group_values.get(g)
                if v is None:
                    continue
                text = f"{v:.1f}" if c.kind == "likert" else f"{100 * v:.0f}%"
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1.15)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["1 / 0%", "2 / 25%", "3 / 50%", "4 / 75%", "5 / 100%"], fontsize=7)
        ax.set_title("Group means (1–5) / pass rates", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", ncols=min(n, 3), frameon=False)
        ax.spines[["top", "right"]].set_visible(False)

    def _plot_measures(self, ax, criteria, names):
        measures = (("agreement", "match across groups"), ("alpha", "Krippendorff α"), ("kappa", "Fleiss κ"))
        width = 0.8 / len(measures)
        for mi, (key, label) in enumerate(measures):
            xs = [i + (mi - 1) * width for i in range(len(criteria))]
            values = [getattr(c, key) for c in criteria]
            ys = [0.0 if v is None else v for v in values]
            bars = ax.bar(xs, ys, width, label=label, color=MEASURE_COLOURS[key])
            for bar, v in zip(bars, values):
                text = "n/a" if v is None else f"{v:.2f}"
                y = max(bar.get_height(), 0.0)
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 1), textcoords="offset points")
        ax.axhline(0, color="#999999", linewidth=0.8)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        lo = min([0.0] + [getattr(c, k) or 0.0 for c in criteria for k, _ in measures])
        ax.set_ylim(min(lo - 0.1, 0), 1.2)
        ax.set_title("Agreement", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", ncols=3, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
