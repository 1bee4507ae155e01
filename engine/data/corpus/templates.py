"""Starter-corpus templates: loading, validation and rendering.

The templates live in ``assets/corpus`` as plain JSON (``people.json``, ``settings.json``,
``phrasings.json`` and ``topics/*.json``). They encode the MiSC construction steps of the EMMA
paper (§3.1 scenario setup: speakers with names and jobs/relationships, one event per session;
§3.1 topic collection: topic families from daily-life keywords; §3.3 egocentric memory: memory
sentences about the main speaker and about the partner, written from the main speaker's view).

Fact clauses are written once with person tokens and rendered in first, second or third person::

    "{I} {am} training for the {city} marathon in {month}"
    first  → "I am training for the Berlin marathon in May"        (the speaker says it)
    second → "you are training for the Berlin marathon in May"     (the main speaker recalls it)
    third  → "he is training …" / "Bob is training …"               (a memory sentence)

Offers use ``{them}``/``{their}``/``{they_are}`` for the partner who receives them. A feeling that
starts with ``+`` is a happy one (the main speaker answers from ``support_positive``).
A template error is a :class:`~engine.data.errors.DataFormatError` naming the file, the record
(family or section) and the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import DataFormatError

TOKEN = re.compile(r"\{(\w+)\}")
PRONOUNS = {
    "she": {"sub": "she", "obj": "her", "pos": "her", "self": "herself"},
    "he": {"sub": "he", "obj": "him", "pos": "his", "self": "himself"},
}
PERSON_TOKENS = ("I", "me", "my", "myself", "am", "was", "have", "do", "s", "es")
OFFER_TOKENS = ("them", "their", "they_are")
PHRASING_KEYS = (
    "greet_open", "greet_reply", "share", "what_about_you", "react_generic", "react_main", "react_sad", "feel",
    "support", "support_positive", "followup", "ask_generic", "progress", "progress_react", "change", "change_react",
    "cross_ask", "cross_answer", "cross_react", "coincidence", "coincidence_react", "self_again",
    "offer", "accept", "promise_recall", "promise_thanks", "close", "close_reply",
)
MEMORY_KEYS = ("partner_fact", "partner_feel", "main_fact", "offer", "update", "progress", "cross")
EVENT_KEYS = ("share", "followup", "cross", "main")


def default_root() -> Path:
    """``assets/corpus`` next to the ``engine`` package (source tree and installed wheel alike)."""
    return Path(__file__).resolve().parents[3] / "assets" / "corpus"


@dataclass(frozen=True)
class Person:
    """Who a clause is about and how to refer to them (grammatical person, name, pronoun)."""

    grammatical: str  # "first" | "second" | "third"
    name: str = ""
    pronoun: str = "she"
    named: bool = False  # third person: first mention by name instead of pronoun


def render_person(text: str, who: Person) -> str:
    """Render the person tokens of a clause (see the module docstring)."""
    pr = PRONOUNS[who.pronoun]
    used_name = [not who.named]

    def subject(possessive: bool) -> str:
        if not used_name[0]:
            used_name[0] = True
            return who.name + "'s" if possessive else who.name
        return pr["pos"] if possessive else pr["sub"]

    def sub(m: re.Match) -> str:
        tok = m.group(1)
        if tok not in PERSON_TOKENS:
            return m.group(0)
        if who.grammatical == "first":
            return {"I": "I", "me": "me", "my": "my", "myself": "myself", "am": "am", "was": "was",
                    "have": "have", "do": "do", "s": "", "es": ""}[tok]
        if who.grammatical == "second":
            return {"I": "you", "me": "you", "my": "your", "myself": "yourself", "am": "are",
                    "was": "were", "have": "have", "do": "do", "s": "", "es": ""}[tok]
        if tok == "I":
            return subject(False)
        if tok == "my":
            return subject(True)
        return {"me": pr["obj"], "myself": pr["self"], "am": "is", "was": "was", "have": "has",
                "do": "does", "s": "s", "es": "es"}[tok]

    return TOKEN.sub(sub, text)


def render_offer(text: str, grammatical: str, pronoun: str) -> str:
    """Render ``{them}``/``{their}``/``{they_are}`` for the partner receiving an offer."""
    pr = PRONOUNS[pronoun]
    if grammatical == "second":
        table = {"them": "you", "their": "your", "they_are": "you are"}
    else:
        table = {"them": pr["obj"], "their": pr["pos"], "they_are": f"{pr['sub']} is"}
    return TOKEN.sub(lambda m: table.get(m.group(1), m.group(0)), text)


def fill(text: str, values: dict[str, str]) -> str:
    """Replace ``{key}`` by ``values[key]``; a token with no value is left for a later pass."""
    return TOKEN.sub(lambda m: values.get(m.group(1), m.group(0)), text)


_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")


def sentence_case(text: str) -> str:
    """Capitalise the first letter of every sentence (clauses start lower case mid-frame)."""
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


@dataclass(frozen=True)
class Fact:
    """One fact a speaker can share: a person-marked clause, a noun phrase, follow-up questions,
    and optionally a change (the source of an ``update`` memory link, EMMA paper §3.3)."""

    family: str
    id: str
    clause: str
    np: str
    ask: tuple[str, ...]
    slots: dict = field(default_factory=dict, hash=False, compare=False)
    change: dict | None = field(default=None, hash=False, compare=False)
    sad: bool = False  # bad news: the main speaker answers from react_sad
    feel: tuple[str, ...] = ()  # overrides the family's feelings when given
    offer: tuple[str, ...] = ()  # overrides the family's offers when given


@dataclass(frozen=True)
class Family:
    """A topic family: reactions, feelings, offers and several facts."""

    id: str
    label: str
    keyword: str
    react: tuple[str, ...]
    feel: tuple[str, ...]
    offer: tuple[str, ...]
    facts: tuple[Fact, ...]


@dataclass(frozen=True)
class Templates:
    names: dict  # pronoun -> tuple of names
    main_jobs: tuple[str, ...]
    partner_roles: tuple[str, ...]
    gendered_roles: dict  # pronoun -> tuple of roles
    settings: tuple[dict, ...]
    phrasings: dict  # key -> tuple of frames (smalltalk: tuple of pairs)
    memory: dict  # key -> tuple of frames
    event: dict  # key -> tuple of frames
    families: tuple[Family, ...]

    def family(self, family_id: str) -> Family:
        for f in self.families:
            if f.id == family_id:
                return f
        raise KeyError(family_id)


# -- loading and validation -------------------------------------------------------------------

def _strings(file, record, obj, key, *, min_len=1) -> tuple[str, ...]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, list) or len(value) < min_len:
        raise DataFormatError(file, record, key, f"expected a list of at least {min_len} strings")
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v.strip():
            raise DataFormatError(file, record, f"{key}[{i}]", "expected a non-empty string")
    return tuple(value)


def _check_tokens(file, record, fld, text, allowed):
    for tok in TOKEN.findall(text):
        if tok not in allowed:
            raise DataFormatError(file, record, fld, f"unknown placeholder {{{tok}}} in {text!r}")
    if text.count("{") != text.count("}"):
        raise DataFormatError(file, record, fld, f"unbalanced braces in {text!r}")


def _load(path: Path):
    from ..episode_format import load_json

    return load_json(path)


def _load_slots(file, record, fld, raw) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DataFormatError(file, record, fld, "expected an object of slot lists")
    return {k: _strings(file, record, raw, k) for k in raw}


def _load_fact(file, family_id, fi, raw) -> Fact:
    rec = f"{family_id}.facts[{fi}]"
    if not isinstance(raw, dict):
        raise DataFormatError(file, family_id, f"facts[{fi}]", "expected an object")
    fid = raw.get("id")
    if not isinstance(fid, str) or not fid:
        raise DataFormatError(file, rec, "id", "expected a non-empty string")
    slots = _load_slots(file, rec, "slots", raw.get("slots"))
    allowed = set(PERSON_TOKENS) | set(slots)
    for key in ("clause", "np"):
        text = raw.get(key)
        if not isinstance(text, str) or not text.strip():
            raise DataFormatError(file, rec, key, "expected a non-empty string")
        _check_tokens(file, rec, key, text, allowed)
    for v in (x for vals in slots.values() for x in vals):
        _check_tokens(file, rec, "slots", v, set(PERSON_TOKENS))
    ask = _strings(file, rec, raw, "ask")
    for i, a in enumerate(ask):
        _check_tokens(file, rec, f"ask[{i}]", a, set(slots))
    extra = {}
    for key, tokens in (("feel", PERSON_TOKENS), ("offer", OFFER_TOKENS)):
        extra[key] = _strings(file, rec, raw, key) if key in raw else ()
        for i, t in enumerate(extra[key]):
            _check_tokens(file, rec, f"{key}[{i}]", t, set(tokens) | set(slots))
    change = raw.get("change")
    if change is not None:
        if not isinstance(change, dict) or not isinstance(change.get("clause"), str):
            raise DataFormatError(file, rec, "change", "expected an object with a clause")
        new_slots = _load_slots(file, rec, "change.slots", change.get("slots"))
        _check_tokens(file, rec, "change.clause", change["clause"], allowed | set(new_slots))
        change = {"clause": change["clause"], "slots": new_slots}
    mood = raw.get("mood", "happy")
    if mood not in ("happy", "sad"):
        raise DataFormatError(file, rec, "mood", f"expected 'happy' or 'sad', got {mood!r}")
    return Fact(family_id, fid, raw["clause"], raw["np"], ask, slots, change, mood == "sad",
                extra["feel"], extra["offer"])


def _load_family(file, fi, raw) -> Family:
    if not isinstance(raw, dict) or not isinstance(raw.get("family"), str):
        raise DataFormatError(file, f"families[{fi}]", "family", "expected a family id string")
    fid = raw["family"]
    for key in ("label", "keyword"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise DataFormatError(file, fid, key, "expected a non-empty string")
    react = _strings(file, fid, raw, "react")
    feel = _strings(file, fid, raw, "feel")
    offer = _strings(file, fid, raw, "offer")
    for i, t in enumerate(feel):
        _check_tokens(file, fid, f"feel[{i}]", t, set(PERSON_TOKENS))
    for i, t in enumerate(offer):
        _check_tokens(file, fid, f"offer[{i}]", t, set(OFFER_TOKENS))
    for i, t in enumerate(react):
        _check_tokens(file, fid, f"react[{i}]", t, set())
    facts = raw.get("facts")
    if not isinstance(facts, list) or len(facts) < 2:
        raise DataFormatError(file, fid, "facts", "expected a list of at least 2 facts")
    loaded = tuple(_load_fact(file, fid, i, f) for i, f in enumerate(facts))
    ids = [f.id for f in loaded]
    if len(set(ids)) != len(ids):
        raise DataFormatError(file, fid, "facts", "duplicate fact id")
    return Family(fid, raw["label"], raw["keyword"], react, feel, offer, loaded)


@lru_cache(maxsize=4)
def load_templates(root: str | Path | None = None) -> Templates:
    """Load and validate every template file under ``root`` (default :func:`default_root`)."""
    root = Path(root) if root is not None else default_root()
    people_file = root / "people.json"
    people = _load(people_file)
    names = {}
    for pron in PRONOUNS:
        names[pron] = _strings(people_file, "names", people.get("names", {}), pron, min_len=8)
    gendered = {
        pron: _strings(people_file, "gendered_roles", people.get("gendered_roles", {}), pron)
        for pron in PRONOUNS
    }
    main_jobs = _strings(people_file, None, people, "main_jobs")
    partner_roles = _strings(people_file, None, people, "partner_roles", min_len=3)

    settings_file = root / "settings.json"
    raw_settings = _load(settings_file).get("settings")
    if not isinstance(raw_settings, list) or len(raw_settings) < 6:
        raise DataFormatError(settings_file, None, "settings", "expected at least 6 settings")
    settings = []
    for i, s in enumerate(raw_settings):
        if not isinstance(s, dict) or not isinstance(s.get("event"), str):
            raise DataFormatError(settings_file, f"settings[{i}]", "event", "expected a string")
        _check_tokens(settings_file, f"settings[{i}]", "event", s["event"], {"M", "P"})
        settings.append({"event": s["event"], "line": s.get("line", "")})

    phr_file = root / "phrasings.json"
    raw = _load(phr_file)
    phrasings = {k: _strings(phr_file, None, raw, k) for k in PHRASING_KEYS}
    small = raw.get("smalltalk")
    if not isinstance(small, list) or not small or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in small
    ):
        raise DataFormatError(phr_file, None, "smalltalk", "expected a list of [line, reply] pairs")
    phrasings["smalltalk"] = tuple(tuple(p) for p in small)
    memory = {k: _strings(phr_file, "memory", raw.get("memory", {}), k) for k in MEMORY_KEYS}
    event = {k: _strings(phr_file, "event", raw.get("event", {}), k) for k in EVENT_KEYS}

    families = []
    topic_files = sorted((root / "topics").glob("*.json"))
    if not topic_files:
        raise DataFormatError(root / "topics", None, None, "no topic files (*.json)")
    for tf in topic_files:
        fams = _load(tf).get("families")
        if not isinstance(fams, list):
            raise DataFormatError(tf, None, "families", "expected a list of topic families")
        families.extend(_load_family(tf, i, f) for i, f in enumerate(fams))
    seen = set()
    for fam in families:
        if fam.id in seen:
            raise DataFormatError(root / "topics", fam.id, "family", "duplicate family id")
        seen.add(fam.id)
    return Templates(names, main_jobs, partner_roles, gendered, tuple(settings), phrasings,
                     memory, event, tuple(families))
