"""Con.S and Coh-Con.S (MDR §5, after Tang et al. 2023 "CLV", ACL 2023) from the consistency classifier.

CLV's released evaluator classifies each (persona, context, response) and reports the share of responses
judged *consistent with the persona* (Con.Score) and the share judged *both coherent with the context and
consistent* (Coh-Con.Score). Here, per response ``r`` with persona lines ``P`` and query ``q``:

* ``con(r)     = 1[ P_consistency(P, r) >= t ]``
* ``coh_con(r) = 1[ P_consistency(P, r) >= t  and  P_coherence(q, r) >= t ]``  (``t`` = the classifier's
  threshold, 0.5 unless its ``classifier.json`` says otherwise)

Con.S = mean of ``con``; Coh-Con.S = mean of ``coh_con`` — fractions in [0, 1], per item, so they
bootstrap as means. Coh-Con.S needs the query each response answers.

The scorer takes any object with ``prob(premise_lists, hypotheses)`` and ``coherence(queries, responses)``
(:class:`engine.metrics.consistency_model.ConsistencyClassifier`), so this module stays torch-free.
"""

from __future__ import annotations

from typing import Sequence


def con_items(classifier, personas: Sequence[Sequence[str]], responses: Sequence[str]) -> list[float]:
    """Per-response Con.S decisions (1.0 consistent, 0.0 not)."""
    t = float(getattr(classifier, "threshold", 0.5))
    probs = classifier.prob([list(p) for p in personas], list(responses)) if responses else []
    return [1.0 if p >= t else 0.0 for p in probs]


def coh_con_items(classifier, personas: Sequence[Sequence[str]], queries: Sequence[str],
                  responses: Sequence[str], con: Sequence[float] | None = None) -> list[float]:
    """Per-response Coh-Con.S decisions (1.0 coherent with the query and consistent with the persona)."""
    t = float(getattr(classifier, "threshold", 0.5))
    if con is None:
        con = con_items(classifier, personas, responses)
    coh = classifier.coherence(list(queries), list(responses)) if responses else []
    return [1.0 if (c >= 0.5 and h >= t) else 0.0 for c, h in zip(con, coh)]
