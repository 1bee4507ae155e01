"""Tokenisers shared by the metrics (torch-free).

Each metric names the tokeniser it uses, so two metrics never disagree on what a "word" is by accident:

* :func:`whitespace_tokens` — lower-cased whitespace split; the Distinct-n tokens (MDR §5, Li et al. 2016).
* :func:`word_tokens` — lower-cased ``\\w+`` runs (punctuation dropped); the Persona-F1 tokens.
* :func:`content_tokens` — :func:`word_tokens` minus English stop words (scikit-learn's
  ``ENGLISH_STOP_WORDS``, the 318-word Glasgow Information Retrieval Group list).

BLEU and ROUGE use their libraries' own tokenisers (sacrebleu ``13a``; rouge-score's default).
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"\w+", re.UNICODE)


def whitespace_tokens(text: str) -> list[str]:
    """``text.lower().split()`` — the tokens Distinct-n counts."""
    return text.lower().split()


def word_tokens(text: str) -> list[str]:
    """Lower-cased runs of word characters (letters, digits, underscore); punctuation is dropped."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop-word list (``sklearn.feature_extraction.text.ENGLISH_STOP_WORDS``)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def content_tokens(text: str) -> list[str]:
    """:func:`word_tokens` without stop words (Persona-F1's tokens)."""
    stops = stop_words()
    return [t for t in word_tokens(text) if t not in stops]


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """Contiguous ``n``-grams of ``tokens`` (none when there are fewer than ``n`` tokens)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
