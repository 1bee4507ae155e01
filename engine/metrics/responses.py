"""Response records and the whole metric table over them — what ``memlab eval responses`` and
``memlab eval compare`` score (torch-free unless Con.S is asked for).

A record (one JSON object per line of a ``.jsonl`` file)::

    {"id": "q1", "response": "...", "responses": ["...", ...], "reference": "...",
     "persona": ["...", ...], "query": "..."}

``id`` and at least one of ``response`` / ``responses`` are required; the rest are optional and decide which
metrics can be computed. The *single response* of a record is ``response``, or ``responses[0]`` when only
``responses`` is given (BLEU-1, ROUGE, C-Dist, Persona-F1 and Con.S use it; with both fields, C-Dist uses
``response`` as the issue specifies). ``responses`` are the sampled replies to the same query (S-Dist).
``persona`` is the content the response should be personalised with (ConvAI2: the speaker's persona lines;
MiLP: the user's profile and history) — Persona-F1 and Con.S read it. ``query`` is the utterance being
answered — Coh-Con.S needs it.

Metric → what it needs (a key is absent when no record has it; computed over the records that have it):

=============  ====================================  =====================================
key            needs                                 kind
=============  ====================================  =====================================
bleu1          response + reference                  corpus (sacrebleu, bootstrapped by item)
rouge1/rougeL  response + reference                  mean over responses
c_dist1/2      response                              corpus
s_dist1/2      responses                             mean over queries
persona_f1     response + persona                    mean over responses
con_s          response + persona + classifier       mean of 0/1 decisions
coh_con_s      response + persona + query + clf.     mean of 0/1 decisions
=============  ====================================  =====================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, MeanScore, interval, resample_weights
from .distinct import c_dist_scored, s_dist_items
from .overlap import bleu1_scored, looks_pretokenised, rouge_f
from .persona_f1 import persona_f1_items

METRIC_KEYS = ("bleu1", "rouge1", "rougeL", "c_dist1", "c_dist2", "s_dist1", "s_dist2", "persona_f1",
               "con_s", "coh_con_s")


class RecordError(ValueError):
    """A malformed response record, located by file, line and field."""

    def __init__(self, file, line: int | None, field: str | None, message: str):
        self.file, self.line, self.field, self.reason = str(file), line, field, message
        where = [f"file {self.file}"]
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {message}")


@dataclass
class ResponseRecord:
    id: str
    response: str | None = None
    responses: list[str] | None = None
    reference: str | None = None
    persona: list[str] | None = None
    query: str | None = None
    line: int | None = None

    @property
    def single(self) -> str:
        return self.response if self.response is not None else self.responses[0]


def _str_list(value, file, line, name) -> list[str]:
    if not isinstance(value, list):
        raise RecordError(file, line, name, f"must be a list of strings, not {type(value).__name__}")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise RecordError(file, line, f"{name}[{i}]", f"must be a string, not {type(v).__name__}")
    return list(value)


def parse_record(obj, file="<memory>", line: int | None = None) -> ResponseRecord:
    """Validate one decoded record; every problem is a :class:`RecordError` naming the field."""
    if not isinstance(obj, dict):
        raise RecordError(file, line, None, f"a record must be a JSON object, not {type(obj).__name__}")
    if "id" not in obj:
        raise RecordError(file, line, "id", "missing")
    rid = obj["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise RecordError(file, line, "id", f"must be a string or an integer, not {type(rid).__name__}")
    rec = ResponseRecord(id=str(rid), line=line)
    if "response" in obj:
        if not isinstance(obj["response"], str):
            raise RecordError(file, line, "response", f"must be a string, not {type(obj['response']).__name__}")
        rec.response = obj["response"]
    if "responses" in obj:
        rec.responses = _str_list(obj["responses"], file, line, "responses")
        if not rec.responses:
            raise RecordError(file, line, "responses", "is empty; give at least one response")
    if rec.response is None and rec.responses is None:
        raise RecordError(file, line, "response", "missing: a record needs 'response' or 'responses'")
    for name in ("reference", "query"):
        if name in obj and obj[name] is not None:
            if not isinstance(obj[name], str):
                raise RecordError(file, line, name, f"must be a string, not {type(obj[name]).__name__}")
            setattr(rec, name, obj[name])
    if "persona" in obj and obj["persona"] is not None:
        rec.persona = _str_list(obj["persona"], file, line, "persona")
    return rec


def read_records(path) -> list[ResponseRecord]:
    """Read a ``.jsonl`` file of response records (blank lines skipped); errors name the line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(path, None, None, "no such file") from None
    except UnicodeDecodeError as e:
        raise RecordError(path, None, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise RecordError(path, None, None, f"cannot read: {e.strerror or e}") from None
    records, seen = [], {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise RecordError(path, number, None, f"malformed JSON at column {e.colno}: {e.msg}") from None
        except RecursionError:
            raise RecordError(path, number, None, "JSON nested too deeply") from None
        rec = parse_record(obj, path, number)
        if rec.id in seen:
            raise RecordError(path, number, "id", f"duplicate id {rec.id!r} (first on line {seen[rec.id]})")
        seen[rec.id] = number
        records.append(rec)
    if not records:
        raise RecordError(path, None, None, "the file holds no records")
    return records


@dataclass
class MetricTable:
    """The scored metrics of one set of records: ``scored[key]`` (a bootstrap-able Scored) over the
    records ``rows[key]`` (indices into the records), plus notes on what could not be computed."""

    n: int
    scored: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, *, ci: bool = False, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                level: float = DEFAULT_LEVEL) -> dict:
        """``{"n": N, metric: value, ...}`` (+ ``"<metric>_ci": [lo, hi]`` with ``ci``; + ``n_by_metric`` when
        a metric used fewer than ``n`` records; + ``notes``)."""
        out: dict = {"n": self.n}
        weights: dict[int, object] = {}
        for key in METRIC_KEYS:
            if key not in self.scored:
                continue
            s = self.scored[key]
            out[key] = s.value()
            if ci:
                w = weights.get(s.n_items)
                if w is None:
                    w = weights[s.n_items] = resample_weights(s.n_items, n_resamples, seed)
                out[f"{key}_ci"] = list(interval(s, w, level=level))
        partial = {k: len(r) for k, r in self.rows.items() if len(r) != self.n}
        if partial:
            out["n_by_metric"] = partial
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def score_records(records: list[ResponseRecord], *, classifier=None, classifier_error: str | None = None,
                  want: Iterable[str] | None = None) -> MetricTable:
    """Every metric the records allow (``want`` restricts the keys); Con.S/Coh-Con.S need ``classifier``."""
    want = set(METRIC_KEYS if want is None else want)
    unknown = want - set(METRIC_KEYS)
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(sorted(unknown))}; known: {', '.join(METRIC_KEYS)}")
    table = MetricTable(n=len(records))

    def put(key, rows, scored):
        if key in want and rows:
            table.scored[key], table.rows[key] = scored(), rows

    single = [r.single for r in records]
    ref_rows = [i for i, r in enumerate(records) if r.reference is not None]
    hyps, refs = [single[i] for i in ref_rows], [records[i].reference for i in ref_rows]
    put("bleu1", ref_rows, lambda: bleu1_scored(hyps, refs))
    if "bleu1" in table.scored and looks_pretokenised(hyps):
        table.notes.append("many responses end in ' .' (pre-tokenised text); BLEU-1 applies sacrebleu's 13a "
                           "tokeniser on top, as specified, which can lower it slightly")
    put("rouge1", ref_rows, lambda: MeanScore(rouge_f(hyps, refs, "rouge1")))
    put("rougeL", ref_rows, lambda: MeanScore(rouge_f(hyps, refs, "rougeL")))
    all_rows = list(range(len(records)))
    put("c_dist1", all_rows, lambda: c_dist_scored(single, 1))
    put("c_dist2", all_rows, lambda: c_dist_scored(single, 2))
    s_rows = [i for i, r in enumerate(records) if r.responses is not None]
    groups = [records[i].responses for i in s_rows]
    put("s_dist1", s_rows, lambda: MeanScore(s_dist_items(groups, 1)))
    put("s_dist2", s_rows, lambda: MeanScore(s_dist_items(groups, 2)))
    p_rows = [i for i, r in enumerate(records) if r.persona is not None]
    put("persona_f1", p_rows, lambda: MeanScore(persona_f1_items([single[i] for i in p_rows],
                                                                 [records[i].persona for i in p_rows])))
    if want & {"con_s", "coh_con_s"} and p_rows:
        if classifier is None:
            table.notes.append("con_s and coh_con_s not computed: "
                               + (classifier_error or "no consistency classifier given"))
        else:
            from .consistency import coh_con_items, con_items

            con = con_items(classifier, [records[i].persona for i in p_rows], [single[i] for i in p_rows])
            put("con_s", p_rows, lambda: MeanScore(con))
            q_rows = [k for k, i in enumerate(p_rows) if records[i].query is not None]
            if q_rows:
                rows = [p_rows[k] for k in q_rows]
                cc = coh_con_items(classifier, [records[i].persona for i in rows],
                                   [records[i].query for i in rows], [single[i] for i in rows],
                                   con=[con[k] for k in q_rows])
                put("coh_con_s", rows, lambda: MeanScore(cc))
            elif "coh_con_s" in want:
                table.notes.append("coh_con_s not computed: no record has a 'query' (the utterance answered)")
    return table
