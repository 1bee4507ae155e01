"""Strict JSON for every reader: numbers and strings that cannot be stored are located errors.

The standard library accepts, and later code then trips over, three things a study must not take
in: integers longer than Python's 4,300-digit conversion limit (``ValueError`` from inside the
decoder), non-finite numbers (``NaN``/``Infinity`` tokens and overflowing ``1e400``, which would
be written back as non-standard JSON) and lone UTF-16 surrogates (``"\\ud800"``, which SQLite's
UTF-8 encoding cannot hold). :func:`loads` parses with hooks that mark such values, and
:func:`check_values` walks a record to name the field that holds one — so the error says file,
record and field, while reading, before anything is written.

:func:`iter_array` streams the elements of a top-level JSON array (or JSON Lines) from a file in
bounded memory with ``json.JSONDecoder.raw_decode`` — the same C decoder as :func:`json.loads`,
so every file gets the same rules however large it is.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import DataFormatError

INT_DIGITS_LIMIT = 4300
CHUNK_CHARS = 1 << 20
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BadValue:
    """A value the decoder read but a study cannot hold (kept so :func:`check_values` can locate it)."""

    __slots__ = ("text", "why")

    def __init__(self, text: str, why: str):
        self.text, self.why = text, why

    def __repr__(self):
        return f"BadValue({self.why})"


_SEEN = [0]  # bumped by the hooks whenever they make a BadValue (so clean records skip the walk)


def _bad(text: str, why: str) -> BadValue:
    _SEEN[0] += 1
    return BadValue(text, why)


def _parse_int(s: str):
    digits = len(s) - (s[0] == "-")
    if digits > INT_DIGITS_LIMIT:
        return _bad(s, f"a number with {digits} digits (at most {INT_DIGITS_LIMIT} are accepted)")
    return int(s)


def _parse_float(s: str):
    f = float(s)
    if not math.isfinite(f):
        return _bad(s, f"the number {s[:20]}{'…' if len(s) > 20 else ''} is too large to represent")
    return f


def _parse_constant(s: str):
    return _bad(s, f"{s} is not a JSON number (non-finite values are rejected)")


DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


def find_bad(obj: Any, path: str = "") -> tuple[str, str] | None:
    """``(field path, reason)`` of the first value in ``obj`` a study cannot hold, else ``None``."""
    stack = [(obj, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as e:
                    return where or None, (f"a lone surrogate \\u{ord(value[e.start]):04x} at character {e.start} "
                                           "(not valid Unicode text)")
        elif isinstance(value, BadValue):
            return where or None, value.why
        elif isinstance(value, float):
            if not math.isfinite(value):
                return where or None, f"{value} is not a finite number"
        elif isinstance(value, dict):
            for k in reversed(list(value)):
                key_path = f"{where}.{k}" if where else str(k)
                bad = find_bad(k, key_path)
                if bad:
                    return bad[0], "the field name holds " + bad[1]
                stack.append((value[k], key_path))
        elif isinstance(value, list):
            for i in range(len(value) - 1, -1, -1):
                stack.append((value[i], f"{where}[{i}]"))
    return None


def check_values(obj: Any, file, record, prefix: str = "") -> None:
    """Raise :class:`DataFormatError` naming file, record and field for a value a study cannot hold."""
    bad = find_bad(obj, prefix)
    if bad:
        raise DataFormatError(file, record, bad[0], bad[1])


def loads(text: str, file, record=None, *, check: bool = True):
    """Parse JSON ``text``; syntax errors and unstorable values are :class:`DataFormatError`\\ s.

    With ``check`` (the default) the whole document is checked with ``record`` as the record;
    readers that split a document into records pass ``check=False`` and call :func:`checked`
    per record so the error names the record.
    """
    seen = _SEEN[0]
    try:
        obj = DECODER.decode(text)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise DataFormatError(file, record, None, f"malformed JSON at {where}: {e.msg}") from None
    except RecursionError:
        raise DataFormatError(file, record, None, "JSON nested too deeply") from None
    except ValueError as e:  # any other conversion limit inside the decoder
        raise DataFormatError(file, record, None, f"unreadable JSON value: {e}") from None
    if check and (_SEEN[0] != seen or _SURROGATE_ESCAPE.search(text)):
        check_document(obj, file, record)
    return obj


def check_document(obj, file, record=None) -> None:
    """:func:`check_values` per record: list elements (record = index), a ``{"episodes": [...]}``
    object's episodes, or the whole object."""
    if record is None and isinstance(obj, list):
        for i, el in enumerate(obj):
            check_values(el, file, i)
    elif record is None and isinstance(obj, dict) and isinstance(obj.get("episodes"), list):
        check_values({k: v for k, v in obj.items() if k != "episodes"}, file, None)
        for i, el in enumerate(obj["episodes"]):
            check_values(el, file, i)
    else:
        check_values(obj, file, record)


def needs_check(text: str, seen_before: int) -> bool:
    """After decoding ``text``: could it hold an unstorable value (so records must be walked)?"""
    return _SEEN[0] != seen_before or bool(_SURROGATE_ESCAPE.search(text))


def seen() -> int:
    return _SEEN[0]


class _Reader:
    """Decoded text of a file in chunks, counting bytes (for progress) and lines (for errors)."""

    def __init__(self, path, on_bytes: Callable[[int], None] | None):
        self.path = Path(path)
        self.f = open(self.path, "rb")
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.on_bytes = on_bytes
        self.buf, self.pos, self.eof = "", 0, False
        self.line = 1  # line number at self.pos
        self.read_bytes = 0

    def more(self) -> bool:
        if self.eof:
            return False
        raw = self.f.read(CHUNK_CHARS)
        self.read_bytes += len(raw)
        if self.on_bytes:
            self.on_bytes(len(raw), raw)
        try:
            text = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as e:
            raise DataFormatError(self.path, None, None,
                                  f"not UTF-8 text (byte {self.read_bytes - len(raw) + e.start}: {e.reason})") from None
        if not raw:
            self.eof = True
        self.line += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos:] + text
        self.pos = 0
        return True

    def skip_space(self) -> str:
        """The next non-space character (not consumed), or '' at the end of the file."""
        while True:
            n = len(self.buf)
            while self.pos < n and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < n:
                return self.buf[self.pos]
            if not self.more():
                return ""

    def where(self, pos: int) -> str:
        line = self.line + self.buf.count("\n", 0, pos)
        col = pos - (self.buf.rfind("\n", 0, pos) + 1) + 1
        return f"line {line} column {col}"

    def close(self):
        self.f.close()


def iter_array(path, *, on_bytes: Callable[[int, bytes], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, element)`` of the top-level JSON array in ``path`` without reading it whole.

    Each element is checked with :func:`check_values` (record = its index). Memory stays about
    one element plus one chunk.
    """
    r = _Reader(path, on_bytes)
    try:
        if r.skip_space() != "[":
            raise DataFormatError(path, None, None, "expected a JSON list")
        r.pos += 1
        index = 0
        while True:
            c = r.skip_space()
            if c == "]" and index == 0:
                r.pos += 1
                break
            if c == "":
                raise DataFormatError(path, index, None, f"malformed JSON at {r.where(r.pos)}: the list is not closed")
            seen = _SEEN[0]
            obj, end = _decode_at(r, path, index)
            if _SEEN[0] != seen or _SURROGATE_ESCAPE.search(r.buf, r.pos, end):
                check_values(obj, path, index)
            r.pos = end
            yield index, obj
            index += 1
            c = r.skip_space()
            if c == ",":
                r.pos += 1
                continue
            if c == "]":
                r.pos += 1
                break
            raise DataFormatError(path, index, None, f"malformed JSON at {r.where(r.pos)}: expected ',' or ']' after element {index - 1}")
        if r.skip_space() != "":
            raise DataFormatError(path, None, None, f"malformed JSON at {r.where(r.pos)}: extra data after the list")
    finally:
        r.close()


def iter_lines(path, *, on_bytes: Callable[[int, bytes], None] | None = None) -> Iterator[tuple[str, Any]]:
    """Yield ``("line N", object)`` for each non-empty line of a JSON Lines file, checked."""
    r = _Reader(path, on_bytes)
    try:
        while True:
            c = r.skip_space()
            if c == "":
                return
            lineno = r.line + r.buf.count("\n", 0, r.pos)
            record = f"line {lineno}"
            obj, end = _decode_at(r, path, record)
            r.pos = end
            check_values(obj, path, record)
            nxt = r.buf.find("\n", r.pos)
            while nxt < 0 and not r.eof:  # the rest of this line must be blank
                start = r.pos
                r.more()
                nxt = r.buf.find("\n", r.pos)
                if start == r.pos and r.eof:
                    break
            rest = r.buf[r.pos: nxt if nxt >= 0 else len(r.buf)]
            if rest.strip():
                raise DataFormatError(path, record, None, "malformed JSON: extra data after the object on this line")
            r.pos = nxt + 1 if nxt >= 0 else len(r.buf)
            yield record, obj
    finally:
        r.close()


def _decode_at(r: _Reader, path, record):
    while True:
        try:
            obj, end = DECODER.raw_decode(r.buf, r.pos)
            if end >= len(r.buf) and not r.eof and r.more():  # a number cut by the chunk edge
                continue
            return obj, end
        except json.JSONDecodeError as e:
            if not r.eof and (e.pos >= len(r.buf) - 1 or "Unterminated" in e.msg or e.pos >= len(r.buf) - 64):
                if r.more():
                    continue
            raise DataFormatError(path, record, None, f"malformed JSON at {r.where(e.pos)}: {e.msg}") from None
        except RecursionError:
            raise DataFormatError(path, record, None, "JSON nested too deeply") from None
        except ValueError as e:
            raise DataFormatError(path, record, None, f"unreadable JSON value: {e}") from None
