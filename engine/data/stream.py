"""Episodes from a file one at a time, in bounded memory — for importing files of any size.

:func:`open_stream` detects the format from the file's head (not its name) and yields validated
:class:`Episode` objects while reading: Xpersona/ConvAI2 and ``memlab-episode/1`` JSON lists are
streamed element by element (:func:`engine.data.strict_json.iter_array`), JSON Lines and the
ParlAI text form line by line. The ``{"format": …, "episodes": […]}`` object form and LoCoMo
(small, deeply nested files) are read whole through :func:`engine.data.readers.read_any`.
Every problem is the same located :class:`DataFormatError` the whole-file readers raise.
``bytes_read`` and ``sha256`` follow the bytes actually read (for progress and the import log).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

from . import strict_json
from .convai2 import episode_from_xpersona_record, iter_parlai_episodes, looks_like_parlai_text
from .episode_format import MAX_FILE_BYTES, episode_from_dict
from .errors import DataFormatError
from .model import Episode
from .readers import FORMATS, read_any

HEAD_BYTES = 1 << 16


class EpisodeStream:
    """Iterate once over the episodes of ``path``; see the module docstring."""

    def __init__(self, path, format: str = "auto"):
        if format not in FORMATS:
            raise DataFormatError(path, None, None, f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
        self.path = Path(path)
        try:
            self.total_bytes = self.path.stat().st_size
        except OSError as e:
            raise DataFormatError(path, None, None, f"cannot read: {e.strerror or e}") from None
        self.bytes_read = 0
        self._sha = hashlib.sha256()
        self.format, self._shape = self._detect(format)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def _on_bytes(self, n: int, raw: bytes) -> None:
        self.bytes_read += n
        self._sha.update(raw)

    def _head(self) -> str:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(HEAD_BYTES)
        except OSError as e:
            raise DataFormatError(self.path, None, None, f"cannot read: {e.strerror or e}") from None
        return raw.decode("utf-8-sig", errors="replace")

    def _detect(self, format: str) -> tuple[str, str]:
        head = self._head()
        first = head.lstrip()[:1]
        if first not in ("[", "{"):
            if format in ("auto", "convai2") and looks_like_parlai_text(head):
                return "convai2", "parlai"
            if format == "auto":
                raise DataFormatError(self.path, None, None,
                                      "unrecognised content: not JSON and not the ParlAI 'your persona:' text form")
            return format, "whole"
        if first == "[" and format in ("auto", "convai2", "memlab"):
            kind = self._first_element_kind()
            if format == "auto":
                format = {"convai2": "convai2", "locomo": "locomo", "misc": "misc"}.get(kind, "memlab")
            if format == "convai2":
                return "convai2", "xpersona"
            if format == "memlab":
                return "memlab", "array"
        if first == "{" and format in ("auto", "memlab") and self._looks_like_json_lines(head):
            from .misc import looks_like_misc

            try:
                if format == "auto" and looks_like_misc(json.loads(head.lstrip().splitlines()[0])):
                    return "misc", "whole"  # the MiSC release's JSON Lines
            except (ValueError, IndexError):
                pass
            return "memlab", "lines"
        if format == "auto":
            from .readers import detect_format

            format = detect_format(self.path)
        return format, "whole"

    def _first_element_kind(self) -> str:
        try:
            for _i, obj in strict_json.iter_array(self.path):
                if isinstance(obj, dict):
                    if "persona" in obj and "dialogue" in obj:
                        return "convai2"
                    if "conversation" in obj and "sample_id" in obj:
                        return "locomo"
                    if "first_session_dialogue" in obj and "main_speaker" in obj:
                        return "misc"
                return "memlab"
        except DataFormatError:
            return "memlab"  # the read proper reports it, with its location
        return "memlab"

    @staticmethod
    def _looks_like_json_lines(head: str) -> bool:
        lines = [l for l in head.splitlines() if l.strip()]
        if len(lines) < 2 or not lines[1].lstrip().startswith("{"):
            return False
        try:
            json.loads(lines[0])
        except ValueError:
            return False
        return True

    def __iter__(self) -> Iterator[Episode]:
        if self._shape == "xpersona":
            stem = self.path.stem
            for i, rec in strict_json.iter_array(self.path, on_bytes=self._on_bytes):
                yield episode_from_xpersona_record(rec, i, self.path, stem)
        elif self._shape in ("array", "lines"):
            seen = set()
            items = (strict_json.iter_array if self._shape == "array" else strict_json.iter_lines)(
                self.path, on_bytes=self._on_bytes)
            for rec, obj in items:
                ep = episode_from_dict(obj, file=self.path, record=rec)
                if ep.id in seen:
                    raise DataFormatError(self.path, rec, "id", f"duplicate episode id {ep.id!r}")
                seen.add(ep.id)
                yield ep
        elif self._shape == "parlai":
            yield from iter_parlai_episodes(self._lines(), self.path)
        else:
            if self.total_bytes > MAX_FILE_BYTES:
                raise DataFormatError(self.path, None, None, f"file is {self.total_bytes / 2**20:.0f} MiB; the limit for "
                                      f"this form is {MAX_FILE_BYTES // 2**20} MiB (JSON lists and JSON Lines have none)")
            episodes = read_any(self.path, self.format)
            raw = self.path.read_bytes()
            self._on_bytes(len(raw), raw)
            yield from episodes

    def _lines(self) -> Iterator[str]:
        with open(self.path, "rb") as f:
            for n, raw in enumerate(f, 1):
                self._on_bytes(len(raw), raw)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataFormatError(self.path, f"line {n}", None, f"not UTF-8 text (byte {e.start} of the line: {e.reason})") from None
                yield line.lstrip("\ufeff") if n == 1 else line


def open_stream(path, format: str = "auto") -> EpisodeStream:
    return EpisodeStream(path, format)
