"""Reader for the MaLP medical dialogues and patient profiles (MiLP paper §3.1 "MedicalDialogue") → episodes.

Source shapes (``../shared/datasets/malp/``):

* ``medical_dialogues.json``: ``[[{"0": {"Assistant": str, "User": str}}, {"1": {...}}, ...], ...]`` — one
  list of rounds per patient; in each round the doctor (``Assistant``) speaks, then the patient (``User``);
* ``patient_profiles.json``: ``[str, ...]`` — each a JSON object *as a string* with ``personal_information``,
  ``symptoms`` and ``dialogue_preference``.

The files were written by an LLM and carry noise: utterances wrapped in stray quotes and prefixed
``Doctor:`` / ``Patient:`` (sometimes both, sometimes nested), profiles followed by free text ("Note: ...")
or replaced by an API error message.  :func:`clean_utterance` strips the quotes and prefixes;
:func:`parse_profile` takes the first JSON object of the string.  A record that still cannot be read is
skipped and reported as a located :class:`DataFormatError` (file, record, field) in ``problems`` — never a
traceback, and the rest of the file is still read.

Mapping onto the MiSC-shaped model: one episode per dialogue = one *user* (the patient,
``patient-NNNN``); the doctor is the main speaker (the bot being personalised).  The profiles do not pair
with the dialogues (3,283 profiles for 555 dialogues, no shared ids, and their contents do not match), so
they are read as a separate collection of user contents, not attached to dialogues.

Sessions (the user's history vs. the turns a system is evaluated on): session 0 holds the rounds up to
the doctor's 4th reply (``HISTORY_ROUNDS``; ~70% of the dialogue, the user's *historical content*),
session 1 the rest (the patient's next utterance, two more doctor replies to be predicted).  The paper's
user-oriented 70/10/20 split (§3.4) is over users and is written into ``Episode.meta["split"]``
(``train``/``valid``/``test``, deterministic for a seed): :func:`engine.data.user_split.user_split`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .episode_format import load_json
from .errors import DataFormatError
from .model import Episode, Memory, Session, Speaker, Turn
from .user_split import user_split

DOCTOR = Speaker("Doctor", "physician")
HISTORY_ROUNDS = 4  # doctor replies in session 0 (history); the rest of the dialogue is session 1
_PREFIX = re.compile(r"^\s*(?:doctor|patient|user|assistant|dr\.?)\s*:\s*", re.I)
_NAME_QUOTE = re.compile(r"^[A-Z][\w.'-]*(?: [A-Z][\w.'-]*)?\s*:\s*(?=[\"“])")  # 'Jane: "Hi, ..."'
# trailing stage directions: "(End of conversation)", "(polite response)", "*ends call*"
_STAGE = re.compile(r"\s*(?:\([a-z ]{2,40}\)|\*[a-z ]{2,40}\*)\s*$", re.I)
_QUOTES = "\"'“”‘’`"
PROFILE_FIELDS = ("personal_information", "symptoms", "dialogue_preference")


def clean_utterance(text: str) -> str:
    """Strip stray wrapping quotes and speaker prefixes (``"Patient: \\"I have...\\""`` → ``I have...``)."""
    prev = None
    text = text.strip()
    while prev != text:
        prev = text
        text = _STAGE.sub("", _NAME_QUOTE.sub("", _PREFIX.sub("", text))).strip()
        if not text:
            break
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
            text = text[1:-1].strip()
        elif text[0] in _QUOTES and text.count(text[0]) % 2 == 1:
            text = text[1:].strip()
        elif text[-1] in _QUOTES and text.count(text[-1]) % 2 == 1:
            text = text[:-1].strip()
        elif text[0] == ":":
            text = text[1:].strip()
    return re.sub(r"\s+", " ", text)


@dataclass
class MalpRead:
    """What a MaLP file gave: the readable episodes / profiles and a located error per skipped record."""

    episodes: list[Episode] = field(default_factory=list)
    profiles: list[dict] = field(default_factory=list)
    problems: list[DataFormatError] = field(default_factory=list)


def _round(path, index: int, r_index: int, rnd) -> tuple[str, str]:
    where = f"[{r_index}]"
    if not isinstance(rnd, dict) or len(rnd) != 1:
        raise DataFormatError(path, index, where, "expected an object with one round number as key")
    (_, body), = rnd.items()
    if not isinstance(body, dict):
        raise DataFormatError(path, index, where, f"round body must be an object, got {type(body).__name__}")
    out = []
    for key in ("Assistant", "User"):
        value = body.get(key)
        if not isinstance(value, str):
            raise DataFormatError(path, index, f"{where}.{key}", "missing or not a string")
        text = clean_utterance(value)
        if not text:
            raise DataFormatError(path, index, f"{where}.{key}", "empty after removing quotes and prefixes")
        out.append(text)
    return out[0], out[1]


def episode_from_dialogue(path, index: int, record, *, history_rounds: int = HISTORY_ROUNDS) -> Episode:
    """One patient's dialogue → an episode (doctor = main speaker, the patient = the one partner)."""
    if not isinstance(record, list) or not record:
        raise DataFormatError(path, index, None, "expected a non-empty list of rounds")
    rounds = [_round(path, index, i, r) for i, r in enumerate(record)]
    if len(rounds) <= history_rounds:
        raise DataFormatError(path, index, None, f"{len(rounds)} rounds: need more than {history_rounds} "
                              "(history + at least one round to evaluate)")
    patient = Speaker(f"patient-{index:04d}", "patient")
    turns: list[Turn] = []
    for doctor, user in rounds:
        turns.append(Turn(f"t{len(turns)}", DOCTOR.name, doctor))
        turns.append(Turn(f"t{len(turns)}", patient.name, user))
    cut = 2 * history_rounds - 1  # session 0 ends with the doctor's history_rounds-th reply
    sessions = [Session(0, patient, "consultation (history)", turns[:cut]),
                Session(1, patient, "consultation (follow-up)", turns[cut:])]
    # the user's content (§3.3 Persona-F1: "the user's content, e.g. historical dialogues"): what the patient
    # said in the history session, as the doctor's memories about them, each from its own turn
    memories = [Memory(f"m{i}", DOCTOR.name, patient.name, t.text, 0, [t.id])
                for i, t in enumerate(x for x in turns[:cut] if x.speaker == patient.name)]
    return Episode(f"malp-{index:04d}", DOCTOR, [patient], sessions, memories, [], str(path),
                   {"format": "malp", "user": patient.name, "rounds": len(rounds)})


def episodes_from_malp(doc, path, *, seed: int = 0) -> MalpRead:
    """Validate a parsed ``medical_dialogues.json`` and build one episode per readable dialogue."""
    if not isinstance(doc, list):
        raise DataFormatError(path, None, None, f"expected a JSON list of dialogues, got {type(doc).__name__}")
    read = MalpRead()
    for i, record in enumerate(doc):
        try:
            read.episodes.append(episode_from_dialogue(path, i, record))
        except DataFormatError as e:
            read.problems.append(e)
    split = user_split([e.id for e in read.episodes], seed)
    for ep in read.episodes:
        ep.meta["split"] = split[ep.id]
    return read


def parse_profile(path, index: int, text) -> dict:
    """One profile string → ``{personal_information, symptoms, dialogue_preference}`` (trailing text after
    the JSON object ignored; an API error message or a missing field is a located error)."""
    if not isinstance(text, str):
        raise DataFormatError(path, index, None, f"expected a JSON string, got {type(text).__name__}")
    if re.search(r"['\"]code['\"]\s*:\s*\d+", text) and "message" in text and "symptoms" not in text:
        raise DataFormatError(path, index, None, "not a profile but an API error message")
    start = text.find("{")
    if start < 0:
        raise DataFormatError(path, index, None, "no JSON object in the string")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise DataFormatError(path, index, None, f"malformed profile JSON at character {e.pos}: {e.msg}") from None
    if not isinstance(obj, dict):
        raise DataFormatError(path, index, None, "the profile is not a JSON object")
    if "code" in obj and "message" in obj and "symptoms" not in obj:
        raise DataFormatError(path, index, None, f"not a profile but an error message (code {obj.get('code')})")
    out = {}
    for key in PROFILE_FIELDS:
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataFormatError(path, index, key, "missing or empty")
        out[key] = clean_utterance(value)
    return out


def profiles_from_malp(doc, path) -> MalpRead:
    if not isinstance(doc, list):
        raise DataFormatError(path, None, None, f"expected a JSON list of profile strings, got {type(doc).__name__}")
    read = MalpRead()
    for i, text in enumerate(doc):
        try:
            read.profiles.append(dict(parse_profile(path, i, text), id=f"profile-{i:04d}"))
        except DataFormatError as e:
            read.problems.append(e)
    return read


def looks_like_malp(doc) -> bool:
    """A MaLP dialogues file: a list of lists of one-key round objects holding Assistant/User."""
    try:
        first = doc[0][0]
        (_, body), = first.items()
        return isinstance(body, dict) and "Assistant" in body and "User" in body
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return False


def read_malp(path, *, seed: int = 0) -> MalpRead:
    """Read a MaLP dialogues file (or a profiles file, recognised by its list of strings)."""
    path = Path(path)
    doc = load_json(path)
    if isinstance(doc, list) and doc and all(isinstance(x, str) for x in doc[:5]):
        return profiles_from_malp(doc, path)
    return episodes_from_malp(doc, path, seed=seed)


def user_history(episode: Episode) -> list[Turn]:
    """The user's historical content: the turns of every session but the last."""
    return [t for s in episode.sessions[:-1] for t in s.turns]


def main(argv=None) -> int:
    """``python -m engine.data.malp DIALOGUES --split test --out FILE``: one split as memlab-episode/1."""
    import argparse
    import sys

    from .episode_format import write_episodes

    ap = argparse.ArgumentParser(prog="python -m engine.data.malp")
    ap.add_argument("dialogues")
    ap.add_argument("--split", choices=("train", "valid", "test", "all"), default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        read = read_malp(args.dialogues, seed=args.seed)
    except DataFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for problem in read.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    eps = [e for e in read.episodes if args.split == "all" or e.meta.get("split") == args.split]
    write_episodes(args.out, eps)
    print(f"{len(eps)} {args.split} users written to {args.out} ({len(read.problems)} records skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
