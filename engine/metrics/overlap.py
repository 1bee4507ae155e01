"""Word-overlap metrics against the reference response (torch-free), each computed by its library.

* **BLEU-1** (Papineni et al. 2002; MDR §5 "Coherence"): sacrebleu's *corpus* BLEU with
  ``max_ngram_order=1`` and its defaults (``13a`` tokeniser, ``exp`` smoothing, brevity penalty over
  the corpus), divided by 100.
* **ROUGE-1** (MiLP §3.3) and **ROUGE-L** (Lin 2004; MDR §5, MiLP §3.3): the mean over responses of
  ``rouge_score``'s F-measure against the reference, ``use_stemmer=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from .bootstrap import MeanScore


@lru_cache(maxsize=1)
def _bleu1():
    from sacrebleu.metrics import BLEU

    # force=True only silences sacrebleu's "forgot to detokenize" log lines (the score is unchanged);
    # the response table reports pre-tokenised input in its notes instead.
    return BLEU(max_ngram_order=1, force=True)


def _check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} responses but {len(references)} references")


def looks_pretokenised(texts: Sequence[str], at_least: int = 100) -> bool:
    """sacrebleu's own heuristic: at least ``at_least`` texts end in a tokenised period (``" ."``)."""
    return sum(1 for t in texts if t.endswith(" .")) >= at_least


def bleu1(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-1 in [0, 1]: ``sacrebleu.corpus_bleu(hyps, [refs])`` with ``max_ngram_order=1``, / 100."""
    return bleu1_scored(hypotheses, references).value()


@dataclass
class Bleu1Score:
    """Corpus BLEU-1 from per-item sacrebleu statistics ``[hyp_len, ref_len, correct_1, total_1]``, so a
    bootstrap resample sums the drawn items' statistics and recomputes the corpus score."""

    stats: np.ndarray  # (n_items, 4)

    @property
    def n_items(self) -> int:
        return int(self.stats.shape[0])

    @staticmethod
    def _score(summed) -> float:
        return _bleu1()._compute_score_from_stats([int(round(x)) for x in summed]).score / 100.0

    def value(self) -> float:
        return self._score(self.stats.sum(axis=0))

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        return np.array([self._score(row) for row in weights @ self.stats])


def bleu1_scored(hypotheses: Sequence[str], references: Sequence[str]) -> Bleu1Score:
    _check_pairs(hypotheses, references)
    stats = _bleu1()._extract_corpus_statistics(list(hypotheses), [list(references)])
    return Bleu1Score(np.asarray(stats, dtype=float).reshape(len(hypotheses), -1))


@lru_cache(maxsize=4)
def _rouge(kind: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=False)


def rouge_f(hypotheses: Sequence[str], references: Sequence[str], kind: str) -> list[float]:
    """Per-response ``rouge_score`` F-measure of ``kind`` (``"rouge1"`` or ``"rougeL"``), no stemming."""
    _check_pairs(hypotheses, references)
    scorer = _rouge(kind)
    return [scorer.score(ref, hyp)[kind].fmeasure for hyp, ref in zip(hypotheses, references)]


def rouge1(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-1 F-measure over responses (MiLP §3.3)."""
    return MeanScore(rouge_f(hypotheses, references, "rouge1")).value()


def rougeL(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure over responses (MDR §5, MiLP §3.3)."""
    return MeanScore(rouge_f(hypotheses, references, "rougeL")).value()
