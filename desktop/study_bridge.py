"""Where the engine's results meet the study database (``desktop`` composes ``engine`` and ``annotation``).

The engine never imports ``annotation`` (import rules), so ``memlab selfplay --study`` and ``memlab eval
compare --study`` reach the study through this module: ``desktop.cli`` hands it to the commands as
``args.study_sink``, and the Studies/Compare pages call it directly. Every function only calls the annotation
side's public API (:func:`annotation.importer.import_file`, :func:`annotation.campaigns.create_campaign`,
:func:`annotation.eval_reports.add_eval_report`); nothing here imports torch or Qt.
"""

from __future__ import annotations

MODEL_PRESET = "model"  # Humanness, Engagingness, Memorability (EMMA paper §5.3, Table 4)


def import_selfplay(study, path, campaign: str, *, groups=3, progress=None):
    """Import a self-play file (``memlab-episode/1``) and create a ``model``-preset campaign over exactly
    its episodes. Returns (import result, campaign). The import is all-or-nothing; if the campaign cannot be
    created (e.g. the name is taken) the error says so and the imported episodes stay for another try."""
    from annotation.campaigns import create_campaign
    from annotation.db import StudyError, open_study
    from annotation.importer import import_file
    from engine.data.episode_format import read_episodes

    with open_study(study, create=True) as s:
        if s.one("SELECT id FROM campaigns WHERE name = ?", (campaign,)) is not None:
            raise StudyError(f"a campaign named {campaign!r} already exists in {study}; choose another name")
        ids = [e.id for e in read_episodes(path)]
        result = import_file(s, path, "memlab", progress=progress)
        camp = create_campaign(s, campaign, MODEL_PRESET, groups=groups, episodes=ids,
                               description=f"self-play episodes from {path}")
    return result, camp


def eval_report_payload(report: dict, *, data: str, title: str = "", campaign: str | None = None) -> dict:
    """``memlab eval compare``'s result → the annotation side's report shape
    (``{"systems", "data", "metrics": {system: {metric: {"value", "low", "high", "n"}}}, ...}``)."""
    metrics = {}
    for system, d in report.get("systems", {}).items():
        metrics[system] = {}
        for key, value in d.items():
            if key.endswith("_ci"):
                continue
            lo, hi = d.get(f"{key}_ci", (None, None))
            metrics[system][key] = {"value": value, "low": lo, "high": hi, "n": report.get("n")}
    return {"systems": list(report.get("systems", {})) or list(report.get("meta", {}).get("systems", {})),
            "data": data, "campaign": campaign, "title": title or "Automatic metrics (memlab eval compare)",
            "metrics": metrics, "n": report.get("n"), "meta": report.get("meta", {})}


def store_eval_report(study, report: dict, *, campaign: str | None = None, title: str = "") -> str:
    """Store a ``memlab eval compare`` result in the study (append-only); returns a short description."""
    from annotation.eval_reports import add_eval_report

    data = str(report.get("meta", {}).get("data") or "held-out turns")
    rid = add_eval_report(study, eval_report_payload(report, data=data, title=title, campaign=campaign))
    return f"evaluation report {rid}" + (f" for campaign {campaign!r}" if campaign else "")
