"""``memlab-episode/1``: MemLab's JSON file format for MiSC-shaped episodes.

A file is one of

* a JSON object ``{"format": "memlab-episode/1", "episodes": [EPISODE, ...]}`` (what we write),
* a JSON list ``[EPISODE, ...]``,
* JSON Lines: one ``EPISODE`` object per line (``.jsonl``).

An ``EPISODE`` is::

    {"id": "ep-001", "main": {"name": "Alice", "job": "teacher"},
     "partners": [{"name": "Bob", "job": "student"}, ...],
     "sessions": [{"index": 0, "partner": "Bob", "event": "...", "date": null,
                   "turns": [{"id": "s0t0", "speaker": "Bob", "text": "...", "memory_ids": ["m3"]}]}],
     "memories": [{"id": "m3", "owner": "Alice", "about": "Bob", "text": "...", "session": 0,
                   "source_turns": ["s0t0"]}],
     "links": [{"src": "m7", "dst": "m3", "kind": "related"}],
     "source": "starter-corpus", "meta": {}}

Rules checked by :func:`episode_from_dict` (each failure is a :class:`DataFormatError` naming file,
record and field): ids unique; every session's partner is a listed partner; every turn speaker is
the main speaker or that session's partner; memory ``owner`` is the main speaker and ``about`` a
known speaker; ``session`` and ``source_turns`` refer to existing sessions/turns; a link goes from
a newer memory to an older or same-session one, between existing memories, with kind
``related`` or ``update``; ``memory_ids`` on turns name existing memories.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from . import strict_json
from .errors import DataFormatError
from .model import LINK_KINDS, Episode, Link, Memory, Session, Speaker, Turn

FORMAT = "memlab-episode/1"
MAX_FILE_BYTES = 512 * 1024 * 1024


class _Ctx:
    """Carries file and record so every check can name them."""

    def __init__(self, file, record):
        self.file, self.record = file, record

    def fail(self, field: str | None, message: str):
        raise DataFormatError(self.file, self.record, field, message)

    def get(self, obj: Any, key: str, typ, path: str, *, required=True, default=None):
        if not isinstance(obj, dict):
            self.fail(path.rsplit(".", 1)[0] if "." in path else None, "expected an object")
        if key not in obj:
            if required:
                self.fail(path, "missing")
            return default
        value = obj[key]
        if typ is int and isinstance(value, bool):
            self.fail(path, f"expected an integer, got {value!r}")
        if not isinstance(value, typ):
            names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            self.fail(path, f"expected {names}, got {type(value).__name__}")
        return value

    def text(self, obj, key, path, *, required=True, default=""):
        value = self.get(obj, key, str, path, required=required, default=default)
        return value

    def str_list(self, obj, key, path):
        values = self.get(obj, key, list, path, required=False, default=[])
        for i, v in enumerate(values):
            if not isinstance(v, str):
                self.fail(f"{path}[{i}]", f"expected str, got {type(v).__name__}")
        return list(values)


def _speaker(ctx: _Ctx, obj, path) -> Speaker:
    if not isinstance(obj, dict):
        ctx.fail(path, f"expected an object with name and job, got {type(obj).__name__}")
    name = ctx.text(obj, "name", f"{path}.name")
    if not name.strip():
        ctx.fail(f"{path}.name", "empty name")
    job = ctx.text(obj, "job", f"{path}.job", required=False, default="")
    return Speaker(name, job)


def episode_from_dict(obj: Any, *, file=None, record=None) -> Episode:
    """Validate one episode object and build an :class:`Episode` (see the module docstring)."""
    ctx = _Ctx(file, record)
    if not isinstance(obj, dict):
        ctx.fail(None, f"expected an episode object, got {type(obj).__name__}")
    fmt = obj.get("format", FORMAT)
    if fmt != FORMAT:
        ctx.fail("format", f"unsupported format {fmt!r} (expected {FORMAT!r})")
    ep_id = ctx.text(obj, "id", "id")
    ctx.record = ep_id if record is None else f"{record} (id {ep_id})"
    main = _speaker(ctx, ctx.get(obj, "main", dict, "main"), "main")
    partners = [
        _speaker(ctx, p, f"partners[{i}]")
        for i, p in enumerate(ctx.get(obj, "partners", list, "partners"))
    ]
    names = {main.name}
    for i, p in enumerate(partners):
        if p.name in names:
            ctx.fail(f"partners[{i}].name", f"duplicate speaker name {p.name!r}")
        names.add(p.name)
    by_name = {p.name: p for p in partners}

    sessions: list[Session] = []
    turn_ids: set[str] = set()
    turn_session: dict[str, int] = {}
    raw_sessions = ctx.get(obj, "sessions", list, "sessions")
    for si, s in enumerate(raw_sessions):
        sp = f"sessions[{si}]"
        index = ctx.get(s, "index", int, f"{sp}.index", required=False, default=si)
        if index != si:
            ctx.fail(f"{sp}.index", f"expected {si} (sessions are numbered 0, 1, 2, … in order)")
        partner_name = ctx.text(s, "partner", f"{sp}.partner")
        if partner_name not in by_name:
            ctx.fail(f"{sp}.partner", f"{partner_name!r} is not one of the episode's partners")
        event = ctx.text(s, "event", f"{sp}.event", required=False, default="")
        date = s.get("date")
        if date is not None and not isinstance(date, str):
            ctx.fail(f"{sp}.date", f"expected str or null, got {type(date).__name__}")
        turns = []
        for ti, t in enumerate(ctx.get(s, "turns", list, f"{sp}.turns")):
            tp = f"{sp}.turns[{ti}]"
            tid = ctx.text(t, "id", f"{tp}.id")
            if tid in turn_ids:
                ctx.fail(f"{tp}.id", f"duplicate turn id {tid!r}")
            speaker = ctx.text(t, "speaker", f"{tp}.speaker")
            if speaker not in (main.name, partner_name):
                ctx.fail(f"{tp}.speaker", f"{speaker!r} is neither {main.name!r} nor this session's partner {partner_name!r}")
            text = ctx.text(t, "text", f"{tp}.text")
            mids = ctx.str_list(t, "memory_ids", f"{tp}.memory_ids")
            turn_ids.add(tid)
            turn_session[tid] = si
            turns.append(Turn(tid, speaker, text, mids))
        sessions.append(Session(si, by_name[partner_name], event, turns, date))

    memories: list[Memory] = []
    mem_session: dict[str, int] = {}
    for mi, m in enumerate(ctx.get(obj, "memories", list, "memories", required=False, default=[])):
        mp = f"memories[{mi}]"
        mid = ctx.text(m, "id", f"{mp}.id")
        if mid in mem_session:
            ctx.fail(f"{mp}.id", f"duplicate memory id {mid!r}")
        owner = ctx.text(m, "owner", f"{mp}.owner", required=False, default=main.name)
        if owner != main.name:
            ctx.fail(f"{mp}.owner", f"memories are egocentric: owner must be the main speaker {main.name!r}")
        about = ctx.text(m, "about", f"{mp}.about")
        if about not in names:
            ctx.fail(f"{mp}.about", f"{about!r} is not a speaker of this episode")
        text = ctx.text(m, "text", f"{mp}.text")
        session = ctx.get(m, "session", int, f"{mp}.session")
        if not 0 <= session < max(len(sessions), 1):
            ctx.fail(f"{mp}.session", f"session {session} does not exist")
        sources = ctx.str_list(m, "source_turns", f"{mp}.source_turns")
        for k, tid in enumerate(sources):
            if tid not in turn_ids:
                ctx.fail(f"{mp}.source_turns[{k}]", f"unknown turn id {tid!r}")
        mem_session[mid] = session
        memories.append(Memory(mid, owner, about, text, session, sources))

    for si, s in enumerate(sessions):
        for ti, t in enumerate(s.turns):
            for k, mid in enumerate(t.memory_ids):
                if mid not in mem_session:
                    ctx.fail(f"sessions[{si}].turns[{ti}].memory_ids[{k}]", f"unknown memory id {mid!r}")

    links: list[Link] = []
    seen_links = set()
    for li, l in enumerate(ctx.get(obj, "links", list, "links", required=False, default=[])):
        lp = f"links[{li}]"
        src = ctx.text(l, "src", f"{lp}.src")
        dst = ctx.text(l, "dst", f"{lp}.dst")
        kind = ctx.text(l, "kind", f"{lp}.kind", required=False, default="related")
        for key, mid in (("src", src), ("dst", dst)):
            if mid not in mem_session:
                ctx.fail(f"{lp}.{key}", f"unknown memory id {mid!r}")
        if src == dst:
            ctx.fail(lp, "a memory cannot link to itself")
        if kind not in LINK_KINDS:
            ctx.fail(f"{lp}.kind", f"expected one of {', '.join(LINK_KINDS)}, got {kind!r}")
        if mem_session[src] < mem_session[dst]:
            ctx.fail(lp, f"links go from the newer memory to the older one ({src!r} is older than {dst!r})")
        if (src, dst) in seen_links:
            ctx.fail(lp, f"duplicate link {src!r} → {dst!r}")
        seen_links.add((src, dst))
        links.append(Link(src, dst, kind))

    source = ctx.text(obj, "source", "source", required=False, default="")
    meta = ctx.get(obj, "meta", dict, "meta", required=False, default={})
    return Episode(ep_id, main, partners, sessions, memories, links, source, dict(meta))


def episode_to_dict(ep: Episode) -> dict:
    """The JSON object for one episode (inverse of :func:`episode_from_dict`)."""
    return {
        "format": FORMAT,
        "id": ep.id,
        "main": {"name": ep.main.name, "job": ep.main.job},
        "partners": [{"name": p.name, "job": p.job} for p in ep.partners],
        "sessions": [
            {
                "index": s.index,
                "partner": s.partner.name,
                "event": s.event,
                "date": s.date,
                "turns": [
                    {"id": t.id, "speaker": t.speaker, "text": t.text, "memory_ids": list(t.memory_ids)}
                    for t in s.turns
                ],
            }
            for s in ep.sessions
        ],
        "memories": [
            {"id": m.id, "owner": m.owner, "about": m.about, "text": m.text,
             "session": m.session, "source_turns": list(m.source_turns)}
            for m in ep.memories
        ],
        "links": [{"src": l.src, "dst": l.dst, "kind": l.kind} for l in ep.links],
        "source": ep.source,
        "meta": ep.meta,
    }


def read_text(path) -> str:
    """Read a UTF-8 text file, failing with a :class:`DataFormatError` that names the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataFormatError(path, None, None, f"cannot read: {e.strerror or e}") from None
    if size > MAX_FILE_BYTES:
        raise DataFormatError(path, None, None, f"file is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB")
    try:
        data = path.read_bytes()
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(path, None, None, f"not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise DataFormatError(path, None, None, f"cannot read: {e.strerror or e}") from None


def load_json(path):
    """Parse a JSON file; a syntax error names the file, line and column."""
    return parse_json(path, read_text(path))


def parse_json(path, text: str):
    """Parse JSON ``text`` read from ``path`` (:mod:`engine.data.strict_json`): a syntax error names
    the file, line and column; a huge, non-finite or lone-surrogate value names record and field."""
    return strict_json.loads(text, path)


def _json_lines(path, text):
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, strict_json.loads(line, path, f"line {lineno}")
        except DataFormatError as e:
            if e.reason.startswith("malformed JSON at line 1 column"):
                raise DataFormatError(path, f"line {lineno}", None,
                                      e.reason.replace("at line 1 column", "at column", 1)) from None
            raise


def read_episodes(path) -> list[Episode]:
    """Read a ``memlab-episode/1`` file (object, list or JSON Lines). All-or-nothing."""
    path = Path(path)
    text = read_text(path)
    seen = strict_json.seen()
    try:
        doc = strict_json.DECODER.decode(text)
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise DataFormatError(path, None, None, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        records = [(f"line {n}", obj) for n, obj in _json_lines(path, text)]
    except RecursionError:
        raise DataFormatError(path, None, None, "JSON nested too deeply") from None
    except ValueError as e:
        raise DataFormatError(path, None, None, f"unreadable JSON value: {e}") from None
    else:
        if strict_json.needs_check(text, seen):
            strict_json.check_document(doc, path)
        if isinstance(doc, dict) and "episodes" in doc:
            if doc.get("format", FORMAT) != FORMAT:
                raise DataFormatError(path, None, "format", f"unsupported format {doc.get('format')!r} (expected {FORMAT!r})")
            doc = doc["episodes"]
            if not isinstance(doc, list):
                raise DataFormatError(path, None, "episodes", "expected a list of episodes")
        if isinstance(doc, dict):
            records = [(0, doc)]
        elif isinstance(doc, list):
            records = list(enumerate(doc))
        else:
            raise DataFormatError(path, None, None, f"expected an object or a list of episodes, got {type(doc).__name__}")
    episodes = []
    seen = set()
    for rec, obj in records:
        ep = episode_from_dict(obj, file=path, record=rec)
        if ep.id in seen:
            raise DataFormatError(path, rec, "id", f"duplicate episode id {ep.id!r}")
        seen.add(ep.id)
        episodes.append(ep)
    return episodes


def write_episodes(path, episodes: Iterable[Episode]) -> Path:
    """Write episodes atomically (temp file + rename); ``.jsonl`` → JSON Lines, else one object."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    docs = [episode_to_dict(e) for e in episodes]
    with open(tmp, "w", encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        else:
            json.dump({"format": FORMAT, "episodes": docs}, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
