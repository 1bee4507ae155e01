"""Reader for LoCoMo very-long multi-session conversations → :class:`Episode` (torch-free).

Source shape (one JSON list)::

    [{"sample_id": "conv-26",
      "conversation": {"speaker_a": "Caroline", "speaker_b": "Melanie",
                       "session_1_date_time": "1:56 pm on 8 May, 2023",
                       "session_1": [{"speaker": "Caroline", "dia_id": "D1:1", "text": "...",
                                      "blip_caption": "a photo of ..."}, ...], ...},
      "observation": {"session_1_observation": {"Caroline": [["fact", "D1:3"], ...], ...}},
      "session_summary": {"session_1_summary": "..."},
      "event_summary": {"events_session_1": {"Caroline": ["..."], "Melanie": [], "date": "..."}},
      "qa": [{"question": "...", "answer": "...", "evidence": ["D1:3"], "category": 2}]}]

Mapping onto the MiSC-shaped model (EMMA paper §3): LoCoMo has two speakers, so ``speaker_a``
is the main speaker and ``speaker_b`` the partner of every session. Each *observation* becomes a
memory held by the main speaker (``about`` = the observed speaker, ``session`` = the session of
the observation) whose ``source_turns`` are its evidence turn ids (``"D1:3"``; a list or a
comma/semicolon-separated string). Turn ids are LoCoMo's ``dia_id``. A shared image is shown as
``[shares a photo: <blip caption>]`` after the text. The session's events (``event_summary``)
become the session event; session summaries and QA pairs are kept in ``Episode.meta``.
"""

from __future__ import annotations

import re

from .episode_format import load_json
from .errors import DataFormatError
from .model import Episode, Memory, Session, Speaker, Turn

_SESSION_KEY = re.compile(r"^session_(\d+)$")
_OBS_KEY = re.compile(r"^session_(\d+)_observation$")
_SPLIT = re.compile(r"[;,\s]+")


def _text(path, record, field, value, *, allow_empty=False) -> str:
    if not isinstance(value, str):
        raise DataFormatError(path, record, field, f"expected str, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataFormatError(path, record, field, "empty text")
    return value


def _dict(path, record, field, value) -> dict:
    if not isinstance(value, dict):
        raise DataFormatError(path, record, field, f"expected an object, got {type(value).__name__}")
    return value


def _evidence(path, record, field, value, known: set[str]) -> list[str]:
    if isinstance(value, str):
        ids = [e for e in _SPLIT.split(value) if e]
    elif isinstance(value, list):
        ids = [_text(path, record, f"{field}[{k}]", e) for k, e in enumerate(value)]
    else:
        raise DataFormatError(path, record, field, f"expected a turn id or a list of them, got {type(value).__name__}")
    for k, e in enumerate(ids):
        if e not in known:
            raise DataFormatError(path, record, field, f"unknown evidence turn id {e!r}")
    return list(dict.fromkeys(ids))


def episode_from_locomo(rec, path, index: int) -> Episode:
    """Validate one LoCoMo sample and build its :class:`Episode`."""
    record = index
    rec = _dict(path, record, None, rec)
    if "sample_id" not in rec:
        raise DataFormatError(path, record, "sample_id", "missing")
    sample_id = _text(path, record, "sample_id", rec["sample_id"])
    record = sample_id
    if "conversation" not in rec:
        raise DataFormatError(path, record, "conversation", "missing")
    conv = _dict(path, record, "conversation", rec["conversation"])
    names = []
    for key in ("speaker_a", "speaker_b"):
        if key not in conv:
            raise DataFormatError(path, record, f"conversation.{key}", "missing")
        names.append(_text(path, record, f"conversation.{key}", conv[key]).strip())
    if names[0] == names[1]:
        raise DataFormatError(path, record, "conversation.speaker_b", "both speakers have the same name")
    main, partner = Speaker(names[0], ""), Speaker(names[1], "")

    numbers = sorted(int(m.group(1)) for k in conv if (m := _SESSION_KEY.match(k)))
    if not numbers:
        raise DataFormatError(path, record, "conversation", "no session_N lists")
    if numbers != list(range(1, len(numbers) + 1)):
        raise DataFormatError(path, record, "conversation", f"sessions must be numbered 1..N without gaps, got {numbers}")

    events = rec.get("event_summary", {})
    events = _dict(path, record, "event_summary", events) if events is not None else {}
    sessions: list[Session] = []
    turn_ids: set[str] = set()
    for n in numbers:
        sp = f"conversation.session_{n}"
        raw = conv[f"session_{n}"]
        if not isinstance(raw, list):
            raise DataFormatError(path, record, sp, f"expected a list of turns, got {type(raw).__name__}")
        turns = []
        for k, t in enumerate(raw):
            tp = f"{sp}[{k}]"
            t = _dict(path, record, tp, t)
            for key in ("speaker", "dia_id", "text"):
                if key not in t:
                    raise DataFormatError(path, record, f"{tp}.{key}", "missing")
            speaker = _text(path, record, f"{tp}.speaker", t["speaker"]).strip()
            if speaker not in names:
                raise DataFormatError(path, record, f"{tp}.speaker", f"{speaker!r} is neither {names[0]!r} nor {names[1]!r}")
            tid = _text(path, record, f"{tp}.dia_id", t["dia_id"])
            if tid in turn_ids:
                raise DataFormatError(path, record, f"{tp}.dia_id", f"duplicate turn id {tid!r}")
            text = _text(path, record, f"{tp}.text", t["text"], allow_empty=True)
            caption = t.get("blip_caption")
            if caption is not None:
                caption = _text(path, record, f"{tp}.blip_caption", caption, allow_empty=True)
                if caption.strip():
                    text = f"{text} [shares a photo: {caption.strip()}]".strip()
            if not text.strip():
                raise DataFormatError(path, record, f"{tp}.text", "empty text")
            turn_ids.add(tid)
            turns.append(Turn(tid, speaker, text))
        date = conv.get(f"session_{n}_date_time")
        if date is not None:
            date = _text(path, record, f"conversation.session_{n}_date_time", date, allow_empty=True)
        event = ""
        ev = events.get(f"events_session_{n}")
        if ev is not None:
            ev = _dict(path, record, f"event_summary.events_session_{n}", ev)
            parts = []
            for name in names:
                lst = ev.get(name, [])
                if not isinstance(lst, list):
                    raise DataFormatError(path, record, f"event_summary.events_session_{n}.{name}", "expected a list")
                parts += [e.strip() for j, e in enumerate(lst)
                          if _text(path, record, f"event_summary.events_session_{n}.{name}[{j}]", e, allow_empty=True).strip()]
            event = " ".join(parts)
        sessions.append(Session(n - 1, partner, event, turns, date))

    memories: list[Memory] = []
    obs = rec.get("observation", {})
    obs = _dict(path, record, "observation", obs) if obs is not None else {}
    for key in sorted(obs, key=lambda k: (int(m.group(1)) if (m := _OBS_KEY.match(k)) else -1, k)):
        m = _OBS_KEY.match(key)
        if not m:
            raise DataFormatError(path, record, f"observation.{key}", "expected keys named session_N_observation")
        n = int(m.group(1))
        if n not in numbers:
            raise DataFormatError(path, record, f"observation.{key}", f"session {n} does not exist")
        per_speaker = _dict(path, record, f"observation.{key}", obs[key])
        for about, items in per_speaker.items():
            fp = f"observation.{key}.{about}"
            if about not in names:
                raise DataFormatError(path, record, fp, f"{about!r} is not a speaker of this conversation")
            if not isinstance(items, list):
                raise DataFormatError(path, record, fp, f"expected a list, got {type(items).__name__}")
            for j, item in enumerate(items):
                ip = f"{fp}[{j}]"
                if not isinstance(item, list) or len(item) != 2:
                    raise DataFormatError(path, record, ip, "expected [text, evidence]")
                text = _text(path, record, f"{ip}[0]", item[0])
                sources = _evidence(path, record, f"{ip}[1]", item[1], turn_ids)
                memories.append(Memory(f"o{n}.{about}.{j}", main.name, about, text, n - 1, sources))

    meta: dict = {}
    summaries = rec.get("session_summary")
    if summaries is not None:
        summaries = _dict(path, record, "session_summary", summaries)
        meta["session_summaries"] = {
            k: _text(path, record, f"session_summary.{k}", v, allow_empty=True) for k, v in summaries.items()
        }
    qa = rec.get("qa")
    if qa is not None:
        if not isinstance(qa, list):
            raise DataFormatError(path, record, "qa", f"expected a list, got {type(qa).__name__}")
        kept = []
        for j, q in enumerate(qa):
            q = _dict(path, record, f"qa[{j}]", q)
            ev = q.get("evidence", [])
            if not isinstance(ev, list) or not all(isinstance(e, str) for e in ev):
                raise DataFormatError(path, record, f"qa[{j}].evidence", "expected a list of turn ids")
            answer = q.get("answer", q.get("adversarial_answer"))
            kept.append({"question": _text(path, record, f"qa[{j}].question", q.get("question")),
                         "answer": None if answer is None else str(answer),
                         "evidence": list(ev), "category": q.get("category")})
        meta["qa"] = kept
    return Episode(sample_id, main, [partner], sessions, memories, [], "locomo", meta)


def episodes_from_locomo(doc, path) -> list[Episode]:
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise DataFormatError(path, None, None, f"expected a JSON list of conversations, got {type(doc).__name__}")
    episodes, seen = [], set()
    for i, rec in enumerate(doc):
        ep = episode_from_locomo(rec, path, i)
        if ep.id in seen:
            raise DataFormatError(path, i, "sample_id", f"duplicate sample id {ep.id!r}")
        seen.add(ep.id)
        episodes.append(ep)
    return episodes


def read_locomo(path) -> list[Episode]:
    """Read a LoCoMo JSON file; raises :class:`DataFormatError` naming file/record/field."""
    return episodes_from_locomo(load_json(path), path)
