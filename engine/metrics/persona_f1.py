"""Persona-F1 (P-F1; MiLP §3.3, after Ma et al. 2021 "One Chatbot Per Person", who take it from
Lian et al. 2019) — torch-free.

Exact definition used here, for one response ``r`` and the user's content ``C`` (a list of texts: the
persona/profile lines and, where given, the user's earlier utterances):

1. tokens: lower-cased ``\\w+`` runs (punctuation dropped) with English stop words removed — the stop-word
   list is scikit-learn's ``ENGLISH_STOP_WORDS`` (318 words, the Glasgow Information Retrieval Group list);
2. ``R`` = the multiset of ``r``'s tokens, ``U`` = the multiset of the tokens of all of ``C`` pooled;
3. ``overlap = |R ∩ U|`` (multiset intersection, as in the usual unigram F1 of ParlAI/SQuAD);
4. ``P = overlap / |R|``, ``Rec = overlap / |U|``, ``P-F1 = 2·P·Rec / (P + Rec)``; 0 when ``R`` or ``U`` is
   empty or nothing overlaps.

The corpus figure is the mean over responses.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from .text import content_tokens


def persona_f1(response: str, content: Sequence[str]) -> float:
    """Unigram F1 (stop words removed) between ``response`` and the pooled user ``content``."""
    if isinstance(content, str):
        content = [content]
    r = Counter(content_tokens(response))
    u = Counter(t for line in content for t in content_tokens(line))
    overlap = sum((r & u).values())
    if not overlap:
        return 0.0
    p = overlap / sum(r.values())
    rec = overlap / sum(u.values())
    return 2 * p * rec / (p + rec)


def persona_f1_items(responses: Sequence[str], contents: Sequence[Sequence[str]]) -> list[float]:
    if len(responses) != len(contents):
        raise ValueError(f"{len(responses)} responses but {len(contents)} user contents")
    return [persona_f1(r, c) for r, c in zip(responses, contents)]
