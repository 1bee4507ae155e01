"""Automatic-evaluation reports stored in the study, append-only like ratings.

A report is what one run of ``memlab eval`` measured: which systems, on what data, and the metric
values with their intervals. It is stored whole (``payload``, standard JSON — NaN/Infinity are
refused) beside the human ratings, so a campaign's HTML/PDF report shows automatic metrics next
to human agreement (:mod:`annotation.report`). Rows cannot be updated or deleted (triggers); a
re-run is a new report.

The ``report`` dict :func:`add_eval_report` takes::

    {"systems": ["emma", "rag"],                      # required, non-empty list of names
     "data": "ConvAI2 valid, 200 dialogues",          # required: what it was measured on
     "campaign": "dataset-1" | None,                  # optional: the campaign it belongs to
     "title": "Automatic metrics",                    # optional
     "metrics": {                                     # system -> metric -> number or
        "emma": {"con_score": {"value": 0.61, "low": 0.55, "high": 0.66, "n": 200},
                 "bleu1": 0.21}},                     #   {"value", "low", "high", "n"}
     ...}                                             # anything else is kept in the payload
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .db import Study, StudyError, now, open_study, write_tx


@dataclass
class EvalReport:
    id: int
    created_at: str
    campaign: str | None
    systems: list[str]
    data: str
    payload: dict

    def metric_rows(self) -> list[dict]:
        """``{"system", "metric", "value", "low", "high", "n"}`` per system and metric (None where absent)."""
        out = []
        for system, metrics in (self.payload.get("metrics") or {}).items():
            for name, m in (metrics or {}).items():
                m = m if isinstance(m, dict) else {"value": m}
                out.append({"system": system, "metric": name, "value": m.get("value"), "low": m.get("low"),
                            "high": m.get("high"), "n": m.get("n")})
        return out


def _check_metrics(metrics) -> None:
    if metrics is None:
        return
    if not isinstance(metrics, dict):
        raise StudyError("report field metrics: expected {system: {metric: value}}")
    for system, ms in metrics.items():
        if not isinstance(ms, dict):
            raise StudyError(f"report field metrics.{system}: expected {{metric: value}}")
        for name, m in ms.items():
            vals = m if isinstance(m, dict) else {"value": m}
            for key in ("value", "low", "high", "n"):
                v = vals.get(key)
                if v is None:
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise StudyError(f"report field metrics.{system}.{name}.{key}: expected a finite number, got {v!r}")


def add_eval_report(study_or_path, report: dict) -> int:
    """Store one automatic-evaluation report (see the module docstring); returns its id."""
    if not isinstance(report, dict):
        raise StudyError(f"an evaluation report is a dict, got {type(report).__name__}")
    systems = report.get("systems")
    if not isinstance(systems, list) or not systems or not all(isinstance(s, str) and s.strip() for s in systems):
        raise StudyError("report field systems: expected a non-empty list of system names")
    data = report.get("data")
    if not isinstance(data, str) or not data.strip():
        raise StudyError("report field data: say what the systems were evaluated on (a non-empty string)")
    _check_metrics(report.get("metrics"))
    try:
        payload = json.dumps(report, ensure_ascii=False, allow_nan=False, sort_keys=False)
    except (TypeError, ValueError) as e:
        raise StudyError(f"the report cannot be stored as standard JSON: {e}") from None
    with open_study(study_or_path) as study:
        with write_tx(study):
            campaign_id = None
            if report.get("campaign"):
                campaign_id = study.one("SELECT id FROM campaigns WHERE name = ?", (report["campaign"],))
                if campaign_id is None:
                    raise StudyError(f"report field campaign: no campaign {report['campaign']!r} in {study.path}")
            return study.conn.execute(
                "INSERT INTO eval_reports (created_at, campaign_id, systems, data, payload) VALUES (?,?,?,?,?)",
                (now(), campaign_id, json.dumps(systems, ensure_ascii=False), data, payload)).lastrowid


def eval_reports(study_or_path, campaign: str | None = None, *, include_study_wide: bool = True) -> list[EvalReport]:
    """Stored reports, oldest first. With ``campaign``: that campaign's, plus (``include_study_wide``)
    those filed without a campaign."""
    with open_study(study_or_path) as study:
        sql = ("SELECT r.*, c.name AS campaign FROM eval_reports r LEFT JOIN campaigns c ON c.id = r.campaign_id")
        params: tuple = ()
        if campaign is not None:
            sql += " WHERE c.name = ?" + (" OR r.campaign_id IS NULL" if include_study_wide else "")
            params = (campaign,)
        return [EvalReport(r["id"], r["created_at"], r["campaign"], json.loads(r["systems"]), r["data"],
                           json.loads(r["payload"])) for r in study.query(sql + " ORDER BY r.id", params)]


def _count(study: Study) -> int:
    return study.one("SELECT COUNT(*) FROM eval_reports")
