"""One entry point for every episode source: ``read_any(path, format="auto")``.

Formats: ``memlab`` (``memlab-episode/1``, see :mod:`engine.data.episode_format`), ``convai2``
(Xpersona JSON or ParlAI ``your persona:`` text, :mod:`engine.data.convai2`) and ``locomo``
(:mod:`engine.data.locomo`). ``auto`` decides from the content, not the file name.
"""

from __future__ import annotations

import json
from pathlib import Path

from .convai2 import episodes_from_parlai_text, episodes_from_xpersona, looks_like_parlai_text
from .episode_format import parse_json, read_episodes, read_text
from . import strict_json
from .errors import DataFormatError
from .locomo import episodes_from_locomo
from .model import Episode

FORMATS = ("auto", "memlab", "convai2", "locomo")


_parse = parse_json


def detect_format(path, text: str | None = None) -> str:
    """Guess ``memlab``, ``convai2`` or ``locomo`` from the file's content."""
    text = read_text(path) if text is None else text
    head = text.lstrip()[:1]
    if head not in ("[", "{"):
        if looks_like_parlai_text(text):
            return "convai2"
        raise DataFormatError(path, None, None, "unrecognised content: not JSON and not the ParlAI 'your persona:' text form")
    try:
        doc = strict_json.DECODER.decode(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            return "memlab"  # JSON Lines
        raise DataFormatError(path, None, None, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise DataFormatError(path, None, None, "JSON nested too deeply") from None
    except ValueError as e:
        raise DataFormatError(path, None, None, f"unreadable JSON value: {e}") from None
    first = doc[0] if isinstance(doc, list) and doc else doc
    if isinstance(first, dict):
        if "persona" in first and "dialogue" in first:
            return "convai2"
        if "conversation" in first and "sample_id" in first:
            return "locomo"
    return "memlab"


def read_any(path, format: str = "auto") -> list[Episode]:
    """Read episodes from ``path`` in ``format``; every problem is a :class:`DataFormatError`."""
    if format not in FORMATS:
        raise DataFormatError(path, None, None, f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    text = read_text(path)
    fmt = detect_format(path, text) if format == "auto" else format
    if fmt == "memlab":
        episodes = read_episodes(path)
    elif fmt == "convai2":
        if text.lstrip()[:1] in ("[", "{"):
            episodes = episodes_from_xpersona(_parse(path, text), path)
        else:
            episodes = episodes_from_parlai_text(text, path)
    else:
        episodes = episodes_from_locomo(_parse(path, text), path)
    if not episodes:
        raise DataFormatError(path, None, None, "the file holds no episodes")
    return episodes
