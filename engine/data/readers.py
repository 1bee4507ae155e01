"""One entry point for every episode source: ``read_any(path, format="auto")``.

Formats: ``memlab`` (``memlab-episode/1``, see :mod:`engine.data.episode_format`), ``convai2``
(Xpersona JSON or ParlAI ``your persona:`` text, :mod:`engine.data.convai2`), ``locomo``
(:mod:`engine.data.locomo`) and ``misc`` (the MiSC release's JSON Lines, :mod:`engine.data.misc`). ``auto`` decides from the content, not the file name.
"""

from __future__ import annotations

import json
from pathlib import Path

from .convai2 import episodes_from_parlai_text, episodes_from_xpersona, looks_like_parlai_text
from .episode_format import parse_json, read_episodes, read_text
from . import strict_json
from .errors import DataFormatError
from .locomo import episodes_from_locomo
from .malp import episodes_from_malp, looks_like_malp
from .misc import episodes_from_misc, looks_like_misc
from .model import Episode

FORMATS = ("auto", "memlab", "convai2", "locomo", "misc", "malp")


_parse = parse_json


def detect_format(path, text: str | None = None) -> str:
    """Guess ``memlab``, ``convai2``, ``locomo`` or ``misc`` from the file's content."""
    text = read_text(path) if text is None else text
    head = text.lstrip()[:1]
    if head not in ("[", "{"):
        if looks_like_parlai_text(text):
            return "convai2"
        raise DataFormatError(path, None, None, "unrecognised content: not JSON and not the ParlAI 'your persona:' text form")
    try:
        doc = strict_json.DECODER.decode(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON Lines: decide from the first record
            first_line = next((ln for ln in text.splitlines() if ln.strip()), "")
            try:
                first = strict_json.DECODER.decode(first_line)
            except (ValueError, RecursionError):  # JSONDecodeError, or a conversion limit inside the decoder
                return "memlab"  # its reader names the bad line
            return "misc" if looks_like_misc(first) else "memlab"
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
        if looks_like_misc(first):
            return "misc"
    if looks_like_malp(doc):
        return "malp"
    return "memlab"


def read_any(path, format: str = "auto", problems: list | None = None) -> list[Episode]:
    """Read episodes from ``path`` in ``format``; every problem is a :class:`DataFormatError`.

    MaLP files are noisy: unreadable dialogues are skipped, each as a located error appended to
    ``problems`` (or, without that list, reported as a warning naming file, record and field)."""
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
    elif fmt == "malp":
        read = episodes_from_malp(_parse(path, text), path)
        episodes = read.episodes
        if problems is not None:
            problems.extend(read.problems)
        elif read.problems:
            import warnings

            warnings.warn(f"{len(read.problems)} MaLP record(s) skipped: " + "; ".join(map(str, read.problems[:20])),
                          stacklevel=2)
    elif fmt == "misc":
        episodes = episodes_from_misc(_misc_records(path, text), path)
    else:
        episodes = episodes_from_locomo(_parse(path, text), path)
    if not episodes:
        raise DataFormatError(path, None, None, "the file holds no episodes")
    return episodes


def _misc_records(path, text: str) -> list[tuple]:
    """(record, object) pairs of a MiSC file: JSON Lines (``line N``) or one JSON list (index)."""
    from .episode_format import _json_lines

    try:
        doc = strict_json.DECODER.decode(text)
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise DataFormatError(path, None, None, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        return [(f"line {n}", obj) for n, obj in _json_lines(path, text)]
    except (RecursionError, ValueError) as e:
        raise DataFormatError(path, None, None, f"unreadable JSON: {e}") from None
    if isinstance(doc, dict):
        return [(0, doc)]
    if not isinstance(doc, list):
        raise DataFormatError(path, None, None, f"expected MiSC episode objects, got {type(doc).__name__}")
    return list(enumerate(doc))
