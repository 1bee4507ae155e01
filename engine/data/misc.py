"""Reader for the MiSC dataset (Jang et al., EMNLP 2024 Findings, "Mixed-Session Conversation with
Egocentric Memory"; released as ``train.jsonl`` / ``val.jsonl`` / ``test.jsonl``) → :class:`Episode`.

The dataset card could not be read from this offline build, so the field names follow the paper (§3, App. B:
scenarios name four speakers as ``Name-Job``, six sessions each with one partner and an event; memories are
summarised per session "About <main>: ... | About <partner>: ..."; links pair a newer memory with an older one;
tags attach memories to the utterances that use them) and the per-session field layout of the authors'
previous release (Conversation Chronicles: ``<ordinal>_session_dialogue`` + ``<ordinal>_session_speakers``).
One episode record::

    {"dataID": "misc-train-17",                      # or "id" / "episode_id"
     "main_speaker": "Alice-teacher",                # "Name-Job", "Name" or {"name", "job"}
     "speakers": ["Alice-teacher", "Bob-student", "Carol-Bob's mother", "Dan-neighbour"],   # optional
     "first_session_event": "Bob asks Alice for advice ...",        # optional
     "first_session_partner": "Bob",                 # optional (default: the session's other speaker)
     "first_session_dialogue": ["Hi Ms. Alice ...", "Hello Bob ..."],
     "first_session_speakers": ["Bob", "Alice"],     # or dialogue = [[speakers...], [utterances...]]
     "first_session_memory": {"Alice": ["I promised Bob ..."], "Bob": ["Bob is worried ..."]},
                                                     # or the paper's string "About Alice: ... | About Bob: ..."
     "first_session_summary": "...",                 # optional (kept in meta)
     "first_session_links": [["<newer memory>", "<older memory>"], ...],   # optional; [a, b, kind] allowed
     "first_session_tags": [[], ["<memory>"], ...],  # optional; one list per utterance, or {"3": [...]}
     ... "second_session_..." up to "sixth_session_..." (any number of ordinals, first to tenth),
     "split": "train"}                               # optional; default: from the file name

Memories and links are referenced by their sentence (whitespace-normalised, case-insensitive). In the
``About`` string form, memories of one speaker are separated by `` / `` or ``;`` or sentence ends.
The official split comes from ``split`` or the file name (``train``/``val``/``valid``/``validation``/``test``)
and is kept as ``Episode.meta["split"]``; session summaries as ``meta["session_summaries"]``.
Every problem is a :class:`DataFormatError` naming the file, the record (its ``dataID``) and the field.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import DataFormatError
from .model import LINK_KINDS, Episode, Link, Memory, Session, Speaker, Turn

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_SESSION_FIELD = re.compile(r"^(%s)_session_(\w+)$" % "|".join(ORDINALS))
SPLITS = {"train": "train", "val": "valid", "valid": "valid", "validation": "valid", "dev": "valid",
          "test": "test"}
_ABOUT = re.compile(r"about\s+([^:|]+?)\s*:", re.IGNORECASE)


def looks_like_misc(rec) -> bool:
    """True for a MiSC episode record (per-session ``first_session_dialogue`` plus a main speaker or
    memories — the authors' earlier two-speaker release has neither)."""
    return (isinstance(rec, dict) and "first_session_dialogue" in rec
            and ("main_speaker" in rec or "first_session_memory" in rec))


def split_from_name(path) -> str | None:
    stem = Path(str(path)).name.lower().split(".")[0]
    for part in re.split(r"[_\-\s]+", stem)[::-1]:
        if part in SPLITS:
            return SPLITS[part]
    return None


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


class _Rec:
    def __init__(self, path, record):
        self.path, self.record = path, record

    def fail(self, field, message):
        raise DataFormatError(self.path, self.record, field, message)

    def text(self, field, value, *, allow_empty=False) -> str:
        if not isinstance(value, str):
            self.fail(field, f"expected a string, got {type(value).__name__}")
        if not allow_empty and not value.strip():
            self.fail(field, "empty text")
        return value.strip()

    def str_list(self, field, value) -> list[str]:
        if not isinstance(value, list):
            self.fail(field, f"expected a list of strings, got {type(value).__name__}")
        return [self.text(f"{field}[{i}]", v) for i, v in enumerate(value)]

    def speaker(self, field, value) -> Speaker:
        if isinstance(value, dict):
            if "name" not in value:
                self.fail(f"{field}.name", "missing")
            job = value.get("job", value.get("relationship", ""))
            return Speaker(self.text(f"{field}.name", value["name"]), self.text(f"{field}.job", job, allow_empty=True))
        text = self.text(field, value)
        name, sep, job = text.partition("-")
        if not name.strip():
            self.fail(field, f"{text!r} has no name; write Name-Job")
        return Speaker(name.strip(), job.strip() if sep else "")


def _about_string(rec: _Rec, field: str, text: str) -> dict[str, list[str]]:
    text = text.replace("[END]", "").strip()
    if not text or text.upper() in ("N/A", "[NONE]", "NONE"):
        return {}
    marks = list(_ABOUT.finditer(text))
    if not marks or marks[0].start() != 0 and text[:marks[0].start()].strip(" |"):
        rec.fail(field, "expected 'About <name>: <memories> | About <name>: <memories>'")
    out: dict[str, list[str]] = {}
    for i, m in enumerate(marks):
        body = text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip(" |")
        parts = re.split(r"\s+/\s+|;|(?<=[.!?])\s+", body)
        out.setdefault(m.group(1).strip(), []).extend(p.strip() for p in parts if p.strip() and p.strip().upper() != "N/A")
    return out


def episode_from_misc(raw, path, index: int, split: str | None = None) -> Episode:
    """Validate one MiSC record and build its :class:`Episode` (memories held by the main speaker)."""
    rec = _Rec(path, index)
    if not isinstance(raw, dict):
        rec.fail(None, f"expected an episode object, got {type(raw).__name__}")
    id_key = next((k for k in ("dataID", "id", "episode_id") if k in raw), None)
    if id_key is None:
        rec.fail("dataID", "missing")
    ep_id = raw[id_key]
    if isinstance(ep_id, int) and not isinstance(ep_id, bool):
        ep_id = str(ep_id)
    ep_id = rec.text(id_key, ep_id)
    rec.record = ep_id
    for key in raw:
        m = _SESSION_FIELD.match(key)
        if key.endswith("_session_dialogue") and not m:
            rec.fail(key, f"unknown session ordinal; use {', '.join(ORDINALS)}")
    present = [o for o in ORDINALS if f"{o}_session_dialogue" in raw]
    if not present:
        rec.fail("first_session_dialogue", "missing: an episode needs at least one session")
    if present != list(ORDINALS[:len(present)]):
        missing = next(o for o in ORDINALS if o not in present)
        rec.fail(f"{missing}_session_dialogue", f"missing while later sessions exist ({', '.join(present)})")

    if "main_speaker" not in raw:
        rec.fail("main_speaker", "missing")
    main = rec.speaker("main_speaker", raw["main_speaker"])
    known: dict[str, Speaker] = {main.name: main}
    if "speakers" in raw:
        if not isinstance(raw["speakers"], list):
            rec.fail("speakers", f"expected a list, got {type(raw['speakers']).__name__}")
        for i, s in enumerate(raw["speakers"]):
            sp = rec.speaker(f"speakers[{i}]", s)
            if sp.name == main.name:
                if sp.job and not main.job:
                    known[main.name] = main = sp
                continue
            if sp.name in known:
                rec.fail(f"speakers[{i}]", f"speaker {sp.name!r} listed twice")
            known[sp.name] = sp

    sessions: list[Session] = []
    memories: list[Memory] = []
    by_text: dict[str, Memory] = {}
    summaries: dict[int, str] = {}
    pending_links: list[tuple[int, str, object]] = []
    pending_tags: list[tuple[int, str, object]] = []
    for si, ordinal in enumerate(present):
        pre = f"{ordinal}_session"
        dia = raw[f"{pre}_dialogue"]
        if (isinstance(dia, list) and len(dia) == 2 and all(isinstance(x, list) for x in dia)
                and f"{pre}_speakers" not in raw):
            speakers = rec.str_list(f"{pre}_dialogue[0]", dia[0])
            texts = rec.str_list(f"{pre}_dialogue[1]", dia[1])
            sp_field = f"{pre}_dialogue[0]"
        else:
            texts = rec.str_list(f"{pre}_dialogue", dia)
            if f"{pre}_speakers" not in raw:
                rec.fail(f"{pre}_speakers", "missing")
            speakers = rec.str_list(f"{pre}_speakers", raw[f"{pre}_speakers"])
            sp_field = f"{pre}_speakers"
        if not texts:
            rec.fail(f"{pre}_dialogue", "empty session")
        if len(speakers) != len(texts):
            rec.fail(sp_field, f"{len(speakers)} speakers for {len(texts)} utterances")
        speakers = [rec.speaker(f"{sp_field}[{i}]", s).name for i, s in enumerate(speakers)]
        others = list(dict.fromkeys(s for s in speakers if s != main.name))
        if main.name not in speakers:
            rec.fail(sp_field, f"the main speaker {main.name!r} does not speak in this session")
        if f"{pre}_partner" in raw:
            partner_name = rec.speaker(f"{pre}_partner", raw[f"{pre}_partner"]).name
            wrong = [i for i, s in enumerate(speakers) if s not in (main.name, partner_name)]
            if wrong:
                rec.fail(f"{sp_field}[{wrong[0]}]", f"{speakers[wrong[0]]!r} is neither the main speaker nor "
                                                     f"the session's partner {partner_name!r}")
        else:
            if len(others) != 1:
                rec.fail(sp_field, f"a session has exactly one partner besides {main.name!r}, found "
                                   f"{others or 'none'}")
            partner_name = others[0]
        partner = known.setdefault(partner_name, Speaker(partner_name, ""))
        event = rec.text(f"{pre}_event", raw[f"{pre}_event"], allow_empty=True) if f"{pre}_event" in raw else ""
        turns = [Turn(f"s{si}t{k}", s, t) for k, (s, t) in enumerate(zip(speakers, texts))]
        sessions.append(Session(si, partner, event, turns))
        if f"{pre}_summary" in raw and raw[f"{pre}_summary"] is not None:
            summaries[si] = rec.text(f"{pre}_summary", raw[f"{pre}_summary"], allow_empty=True)

        mem = raw.get(f"{pre}_memory")
        if mem is not None:
            field = f"{pre}_memory"
            if isinstance(mem, str):
                mem = _about_string(rec, field, mem)
            if not isinstance(mem, dict):
                rec.fail(field, f"expected {{speaker: [memories]}} or an 'About <name>: ...' string, "
                                f"got {type(mem).__name__}")
            for about_key, items in mem.items():
                about = re.sub(r"^about[\s_]+", "", str(about_key).strip(), flags=re.IGNORECASE).strip()
                if about not in known:
                    rec.fail(f"{field}.{about_key}", f"memory about unknown speaker {about!r}")
                if isinstance(items, str):
                    items = [items]
                for j, text in enumerate(rec.str_list(f"{field}.{about_key}", items)):
                    key = _norm(text)
                    if key in by_text:
                        continue  # the same sentence again: one memory
                    m = Memory(f"m{len(memories)}", main.name, about, text, si)
                    memories.append(m)
                    by_text[key] = m
        for kind, store in (("links", pending_links), ("tags", pending_tags)):
            if f"{pre}_{kind}" in raw and raw[f"{pre}_{kind}"] is not None:
                store.append((si, f"{pre}_{kind}", raw[f"{pre}_{kind}"]))

    def lookup(field, text) -> Memory:
        text = rec.text(field, text)
        m = by_text.get(_norm(text))
        if m is None:
            rec.fail(field, f"no memory says {text!r}")
        return m

    links: list[Link] = []
    seen_links = set()
    for si, field, value in pending_links:
        if not isinstance(value, list):
            rec.fail(field, f"expected a list of [newer, older] memory pairs, got {type(value).__name__}")
        for k, pair in enumerate(value):
            f = f"{field}[{k}]"
            if not isinstance(pair, list) or len(pair) not in (2, 3):
                rec.fail(f, "expected [newer memory, older memory] or [newer, older, kind]")
            a, b = lookup(f"{f}[0]", pair[0]), lookup(f"{f}[1]", pair[1])
            kind = rec.text(f"{f}[2]", pair[2]) if len(pair) == 3 else "related"
            if kind not in LINK_KINDS:
                rec.fail(f"{f}[2]", f"link kind must be one of {', '.join(LINK_KINDS)}")
            if a.id == b.id:
                rec.fail(f, "a memory cannot link to itself")
            if a.session < b.session:
                a, b = b, a  # links go from the newer memory to the older one
            if a.session > si:
                rec.fail(f, f"links a memory of a later session ({ORDINALS[a.session]})")
            if (a.id, b.id) not in seen_links:
                seen_links.add((a.id, b.id))
                links.append(Link(a.id, b.id, kind))
    for si, field, value in pending_tags:
        turns = sessions[si].turns
        if isinstance(value, list):
            if len(value) != len(turns):
                rec.fail(field, f"{len(value)} tag lists for {len(turns)} utterances")
            items = list(enumerate(value))
        elif isinstance(value, dict):
            items = []
            for key, refs in value.items():
                if not str(key).isdigit() or int(key) >= len(turns):
                    rec.fail(f"{field}.{key}", f"not an utterance index (0..{len(turns) - 1})")
                items.append((int(key), refs))
        else:
            rec.fail(field, f"expected one list of memories per utterance, got {type(value).__name__}")
        for k, refs in items:
            f = f"{field}[{k}]" if isinstance(value, list) else f"{field}.{k}"
            if refs is None:
                continue
            if isinstance(refs, str):
                refs = [refs]
            for r, ref in enumerate(rec.str_list(f, refs)):
                m = lookup(f"{f}[{r}]", ref)
                if m.session > si:
                    rec.fail(f"{f}[{r}]", f"tags a memory that is formed only in the {ORDINALS[m.session]} session")
                if m.id not in turns[k].memory_ids:
                    turns[k].memory_ids.append(m.id)

    split_value = raw.get("split", split)
    if split_value is not None:
        split_value = rec.text("split", split_value)
        split_value = SPLITS.get(split_value.lower())
        if split_value is None:
            rec.fail("split", f"unknown split {raw.get('split')!r}; expected train, val(id) or test")
    partners = [known[n] for n in dict.fromkeys(s.partner.name for s in sessions)]
    meta = {"split": split_value} if split_value else {}
    if summaries:
        meta["session_summaries"] = {str(k): v for k, v in summaries.items()}
    return Episode(id=ep_id, main=main, partners=partners, sessions=sessions, memories=memories, links=links,
                   source="misc", meta=meta)


def episodes_from_misc(records, path) -> list[Episode]:
    """Episodes from a list of MiSC records (a JSON list, or the lines of a ``.jsonl`` file)."""
    split = split_from_name(path)
    out, seen = [], set()
    for i, raw in records:
        ep = episode_from_misc(raw, path, i, split)
        if ep.id in seen:
            raise DataFormatError(path, i, "dataID", f"duplicate episode id {ep.id!r}")
        seen.add(ep.id)
        out.append(ep)
    return out
