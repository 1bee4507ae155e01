"""``memlab eval responses FILE.jsonl [--json]``: every metric a file of response records allows."""

from __future__ import annotations

import sys


def register(esub) -> None:
    r = esub.add_parser(
        "responses", help="score a .jsonl file of responses (BLEU-1, ROUGE, Distinct, Persona-F1, Con.S)",
        description="One JSON object per line: {\"id\", \"response\" | \"responses\": [...], \"reference\", "
                    "\"persona\": [...], \"query\"}. Prints the metrics the records allow (keys are absent "
                    "when no record has what they need). Con.S/Coh-Con.S use the shipped consistency "
                    "classifier (or --classifier DIR); Coh-Con.S needs 'query'.")
    r.add_argument("file", help="response records (.jsonl)")
    r.add_argument("--json", action="store_true", help="print one JSON object (fractions in [0, 1])")
    r.add_argument("--ci", action="store_true", help="add bootstrap intervals (<metric>_ci)")
    r.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    r.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--classifier", help="consistency classifier directory; 'none' skips Con.S "
                                        "(default: the shipped one)")
    r.add_argument("--device", help="device for the classifier (default: cuda when present, else cpu)")
    r.set_defaults(func=run_responses)


def load_classifier(choice: str | None, device: str | None = None):
    """(classifier or None, why not) — never raises for a missing classifier, says why instead."""
    if choice == "none":
        return None, "skipped (--classifier none)"
    try:
        from engine.metrics.consistency_model import ConsistencyClassifier
    except ImportError as e:  # the annotation-only install has no torch
        return None, f"the consistency classifier needs MemLab's engine extra ({e})"
    try:
        if choice:
            return ConsistencyClassifier.load(choice, device=device), None
        return ConsistencyClassifier.load_default(device=device), None
    except FileNotFoundError as e:
        return None, str(e)
    except ImportError as e:
        return None, f"the consistency classifier needs MemLab's engine extra ({e})"


def run_responses(args) -> int:
    from engine.metrics.responses import RecordError, read_records, score_records

    from .cli import dump_json, err, print_table

    try:
        records = read_records(args.file)
    except RecordError as e:
        err(f"error: {e}")
        return 2
    classifier, why = None, None
    if any(r.persona is not None for r in records):
        classifier, why = load_classifier(args.classifier, args.device)
        if classifier is not None:
            err(f"consistency classifier: {classifier.source}")
    try:
        table = score_records(records, classifier=classifier, classifier_error=why)
        result = table.to_dict(ci=args.ci, n_resamples=args.resamples, seed=args.seed, level=args.level)
    except ValueError as e:
        err(f"error: {e}")
        return 2
    if args.json:
        print(dump_json(result))
    else:
        print_table(result)
    for note in result.get("notes", []):
        if args.json:
            err(f"note: {note}")
    return 0
