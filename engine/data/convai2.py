"""Reader for ConvAI2 / PersonaChat dialogues → :class:`Episode` (torch-free).

Two source forms are accepted:

* the Xpersona JSON release: ``[{"persona": [str, ...], "dialogue": [[user, bot], ...]}, ...]``;
  the first user turn may be ``__SILENCE__`` (the bot speaks first), which is dropped;
* the ParlAI FB-dialog text form (``self_original`` / ``both_original``)::

      1 your persona: i like to ski.
      2 partner's persona: i have a dog.
      3 hi , how are you ?\\tgood , you ?\\t\\tcandidate 1|candidate 2

  line numbers restart at 1 for each dialogue; each dialogue line is ``query<TAB>label[...]``.

Mapping onto the MiSC-shaped model (EMMA paper §3): one episode per dialogue with one session;
the bot whose persona is given is the main speaker ``Bot`` and the human side is the partner
``User``. Persona sentences become the main speaker's memories (``about`` = ``Bot`` for
``your persona``, ``User`` for ``partner's persona``) formed in session 0 with no source turns —
they are given, not summarised from the dialogue; ``meta["persona_memories"]`` lists their ids so
views can say "persona line, given before the conversation".
"""

from __future__ import annotations

import re
from pathlib import Path

from .episode_format import load_json, read_text
from .errors import DataFormatError
from .model import Episode, Memory, Session, Speaker, Turn

MAIN = Speaker("Bot", "persona owner")
PARTNER = Speaker("User", "conversation partner")
SILENCE = "__SILENCE__"
_LINE = re.compile(r"^(\d+) (.*)$")


def _episode(ep_id: str, persona: list[str], partner_persona: list[str],
             pairs: list[tuple[str, str]], source: str) -> Episode:
    turns: list[Turn] = []
    for user, bot in pairs:
        if user != SILENCE:
            turns.append(Turn(f"t{len(turns)}", PARTNER.name, user))
        turns.append(Turn(f"t{len(turns)}", MAIN.name, bot))
    memories = [Memory(f"p{i}", MAIN.name, MAIN.name, text, 0) for i, text in enumerate(persona)]
    memories += [Memory(f"q{i}", MAIN.name, PARTNER.name, text, 0) for i, text in enumerate(partner_persona)]
    session = Session(0, PARTNER, "", turns)
    # the persona lines are given before the conversation, not summarised from it: say so, so a
    # rater is not told they were "formed in session 1" from some turns
    meta = {"persona_memories": [m.id for m in memories]} if memories else {}
    return Episode(ep_id, MAIN, [PARTNER], [session], memories, [], source, meta)


def _check_text(path, record, field, value) -> str:
    if not isinstance(value, str):
        raise DataFormatError(path, record, field, f"expected str, got {type(value).__name__}")
    if not value.strip():
        raise DataFormatError(path, record, field, "empty text")
    return value


def episodes_from_xpersona(doc, path) -> list[Episode]:
    """Validate a parsed Xpersona JSON document and build one episode per dialogue."""
    if not isinstance(doc, list):
        raise DataFormatError(path, None, None, f"expected a JSON list of dialogues, got {type(doc).__name__}")
    stem = Path(str(path)).stem
    return [episode_from_xpersona_record(rec, i, path, stem) for i, rec in enumerate(doc)]


def episode_from_xpersona_record(rec, i: int, path, stem: str) -> Episode:
    """One Xpersona dialogue object (record ``i`` of ``path``) as an episode ``{stem}-{i}``."""
    if not isinstance(rec, dict):
        raise DataFormatError(path, i, None, f"expected an object with persona and dialogue, got {type(rec).__name__}")
    for key in ("persona", "dialogue"):
        if key not in rec:
            raise DataFormatError(path, i, key, "missing")
        if not isinstance(rec[key], list):
            raise DataFormatError(path, i, key, f"expected a list, got {type(rec[key]).__name__}")
    persona = [_check_text(path, i, f"persona[{k}]", p) for k, p in enumerate(rec["persona"])]
    partner = rec.get("partner_persona", [])
    if not isinstance(partner, list):
        raise DataFormatError(path, i, "partner_persona", f"expected a list, got {type(partner).__name__}")
    partner = [_check_text(path, i, f"partner_persona[{k}]", p) for k, p in enumerate(partner)]
    if not rec["dialogue"]:
        raise DataFormatError(path, i, "dialogue", "empty dialogue")
    pairs = []
    for k, pair in enumerate(rec["dialogue"]):
        if not isinstance(pair, list) or len(pair) != 2:
            raise DataFormatError(path, i, f"dialogue[{k}]", "expected a [user, bot] pair")
        user = _check_text(path, i, f"dialogue[{k}][0]", pair[0])
        if user == SILENCE and k:
            raise DataFormatError(path, i, f"dialogue[{k}][0]", f"{SILENCE} is only allowed as the first user turn")
        pairs.append((user, _check_text(path, i, f"dialogue[{k}][1]", pair[1])))
    return _episode(f"{stem}-{i}", persona, partner, pairs, "convai2")


def episodes_from_parlai_text(text: str, path) -> list[Episode]:
    """Parse the ParlAI ``your persona:`` text form (see the module docstring)."""
    episodes = list(iter_parlai_episodes(text.splitlines(), path))
    if not episodes:
        raise DataFormatError(path, None, None, "no dialogues found")
    return episodes


def iter_parlai_episodes(lines, path):
    """Episodes of the ParlAI text form, one at a time, from an iterable of lines (streaming)."""
    stem = Path(str(path)).stem
    count = 0
    state = None  # (record, persona, partner persona, pairs, last line number)

    def finish():
        record, persona, partner, pairs, _ = state
        if not pairs:
            raise DataFormatError(path, record, "dialogue", "a dialogue with personas but no utterances")
        return _episode(f"{stem}-{count}", persona, partner, pairs, "convai2")

    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise DataFormatError(path, f"line {lineno}", "line_number",
                                  "expected a line starting with a number and a space (ParlAI FB-dialog form)")
        number, rest = int(m.group(1)), m.group(2)
        if number == 1 or state is None:
            if number != 1:
                raise DataFormatError(path, f"line {lineno}", "line_number", f"a dialogue must start at 1, got {number}")
            if state is not None:
                yield finish()
                count += 1
            state = (f"dialogue {count} (line {lineno})", [], [], [], 0)
        record, persona, partner, pairs, last = state
        if number != last + 1:
            raise DataFormatError(path, record, "line_number", f"line {lineno}: expected number {last + 1}, got {number}")
        state = (record, persona, partner, pairs, number)
        if rest.startswith("your persona:"):
            if pairs:
                raise DataFormatError(path, record, "persona", f"line {lineno}: persona after the dialogue started")
            persona.append(_check_text(path, record, "persona", rest[len("your persona:"):].strip()))
            continue
        if rest.startswith("partner's persona:"):
            if pairs:
                raise DataFormatError(path, record, "partner_persona", f"line {lineno}: persona after the dialogue started")
            partner.append(_check_text(path, record, "partner_persona", rest[len("partner's persona:"):].strip()))
            continue
        fields = rest.split("\t")
        if len(fields) < 2 or not fields[1].strip():
            raise DataFormatError(path, record, "labels", f"line {lineno}: expected 'query<TAB>label'")
        user = _check_text(path, record, "text", fields[0].strip())
        bot = _check_text(path, record, "labels", fields[1].split("|")[0].strip())
        pairs.append((user, bot))
    if state is not None:
        yield finish()


def looks_like_parlai_text(text: str) -> bool:
    first = next((l for l in text.splitlines() if l.strip()), "")
    return bool(_LINE.match(first)) and ("your persona:" in text[:4096] or "\t" in first)


def read_convai2(path) -> list[Episode]:
    """Read a ConvAI2 file in either form; raises :class:`DataFormatError` naming file/record/field."""
    text = read_text(path)
    if text.lstrip().startswith("["):
        return episodes_from_xpersona(load_json(path), path)
    return episodes_from_parlai_text(text, path)
