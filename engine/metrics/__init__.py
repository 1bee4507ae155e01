"""Automatic metrics for personalised dialogue (torch-free except the consistency classifier).

One small function per metric, each computed by a well-kept library where one exists and citing its paper:

* :func:`bleu1` (sacrebleu), :func:`rouge1` / :func:`rougeL` (rouge-score) — :mod:`.overlap`
* :func:`c_dist` / :func:`s_dist` — :mod:`.distinct` (MDR §5)
* :func:`persona_f1` — :mod:`.persona_f1` (MiLP §3.3, Ma et al. 2021)
* Con.S / Coh-Con.S — :mod:`.consistency` over :class:`.consistency_model.ConsistencyClassifier`

Every score is a fraction in [0, 1]. Per-item scores are available where a metric is per-item, and every
metric (corpus-level too) exposes a bootstrap through :mod:`.bootstrap`; :func:`score_records` builds the
whole table for a list of :class:`ResponseRecord`.
"""

from .bootstrap import MeanScore, interval, mean_ci, percentile_interval, resample_weights
from .distinct import c_dist, c_dist_scored, s_dist, s_dist_items
from .overlap import bleu1, bleu1_scored, rouge1, rouge_f, rougeL
from .persona_f1 import persona_f1, persona_f1_items
from .responses import METRIC_KEYS, MetricTable, RecordError, ResponseRecord, parse_record, read_records, score_records

__all__ = [
    "MeanScore", "interval", "mean_ci", "percentile_interval", "resample_weights",
    "c_dist", "c_dist_scored", "s_dist", "s_dist_items",
    "bleu1", "bleu1_scored", "rouge1", "rouge_f", "rougeL",
    "persona_f1", "persona_f1_items",
    "METRIC_KEYS", "MetricTable", "RecordError", "ResponseRecord", "parse_record", "read_records", "score_records",
]
