"""``memlab eval``: automatic evaluation. ``responses`` scores a file of response records
(:mod:`engine.metrics.responses`); further actions (``compare``) register on the same group through
:data:`ACTIONS`.
"""

from __future__ import annotations

import json
import sys

# Modules adding ``memlab eval <action>``; each has ``register(eval_subparsers)``.
ACTIONS = (
    "engine.evaluation.responses_cli",  # memlab eval responses
    "engine.evaluation.compare_cli",    # memlab eval compare
)

LABELS = {"bleu1": "BLEU-1", "rouge1": "ROUGE-1", "rougeL": "ROUGE-L", "c_dist1": "C-Dist-1",
          "c_dist2": "C-Dist-2", "s_dist1": "S-Dist-1", "s_dist2": "S-Dist-2", "persona_f1": "Persona-F1",
          "con_s": "Con.S", "coh_con_s": "Coh-Con.S"}


def register(sub) -> None:
    import importlib

    p = sub.add_parser("eval", help="automatic evaluation (metrics, system comparison)",
                       description="Automatic metrics for dialogue responses: BLEU-1, ROUGE-1/L, C-/S-Dist-1/2, "
                                   "Persona-F1, Con.S, Coh-Con.S (all fractions in [0, 1]).")
    esub = p.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    for name in ACTIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(esub)


def err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def print_table(result: dict, out=None) -> None:
    """A plain table of a metric dict (values ×100, as papers print them; JSON keeps fractions)."""
    out = out or sys.stdout
    from engine.metrics.responses import METRIC_KEYS

    print(f"n = {result['n']}", file=out)
    for key in METRIC_KEYS:
        if key not in result:
            continue
        line = f"  {LABELS[key]:<11} {100 * result[key]:6.2f}"
        if f"{key}_ci" in result:
            lo, hi = result[f"{key}_ci"]
            line += f"   [{100 * lo:6.2f}, {100 * hi:6.2f}]"
        if key in result.get("n_by_metric", {}):
            line += f"   (over {result['n_by_metric'][key]} records)"
        print(line, file=out)
    for note in result.get("notes", []):
        print(f"note: {note}", file=out)


def dump_json(obj) -> str:
    return json.dumps(obj, indent=1, allow_nan=False, default=str)
