"""EMMA's dialogue-module sequences (EMMA paper, Appendix E.1; release conventions in docs/architecture.md).

One dialogue module does three tasks, selected by a prefix (§4.1):

* **Dialogue generation** (Appendix E.1 "Dialogue Generation")::

      generation: [MAIN] main-job [PARTNER] partner-job [MEMORY] m1 [LINK] linked ... [MEMORY] mN ...
      [NOW] <ordinal> session [USER-NAME] utterance [BOT-NAME]

  where ``[MAIN]``/``[PARTNER]`` are the speakers' names in brackets (the released chat loop writes
  ``[Name] text [OtherName]`` for turns and ``[NOW] second session`` for the session marker).
* **Memory summarisation** (Appendix E.1 "Memory Summarization")::

      summarize [ABOUT_<name>]: <whole session sequence>

  answered by memory sentences joined with ``[SEP]``, or ``[NONE]`` when there is nothing to keep
  (§4.1 "Memory Summarizer"). Each stored memory gets the suffix ``(about <name>, from <ordinal>
  session)``.
* **Memory linking** (Appendix E.1 "Memory Connection")::

      memory sentence1: <m1> memory sentence2: <m2>

  answered ``positive`` (related) or ``negative`` (§4.1 "Memory Linker").

For causal chat models the same three tasks are written as instruction prompts in the model's chat
template (the paper's Appendix H runs chat LLMs with EMMA's retriever this way):
:func:`chat_messages` returns the system + user messages; the answer is the assistant turn, with
the same target text as the seq2seq path (reply, ``[SEP]``-joined memories / ``[NONE]``, or a label
word), so :func:`parse_summary` and :data:`LINK_LABELS` serve both paths.

Session indices are 0-based everywhere in MemLab (``Memory.session``); :func:`ordinal` turns index
0 into ``"first"``.

Pure Python (no torch): the training code and the annotation side may import it.
"""

from __future__ import annotations

import re
from typing import Any

from engine.data.model import Speaker

GENERATION_PREFIX = "generation:"
MEMORY_TOKEN = "[MEMORY]"
LINK_TOKEN = "[LINK]"
NOW_TOKEN = "[NOW]"
SEP_TOKEN = "[SEP]"
NONE_TOKEN = "[NONE]"
SPECIAL_TOKENS = (MEMORY_TOKEN, LINK_TOKEN, NOW_TOKEN, SEP_TOKEN, NONE_TOKEN)

#: The two label words of the memory linker (§4.1): index 0 = linked, index 1 = not linked.
LINK_LABELS = ("positive", "negative")

TASKS = ("generation", "summarize", "link")
#: The summary-based ablation's task (Appendix I): ``summarize [SESSION]: ...`` → one session summary.
SESSION_SUMMARY_TASK = "session_summary"

_ORDINALS = (
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
    "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
    "eighteenth", "nineteenth", "twentieth",
)


def ordinal(i: int) -> str:
    """0-based session index → the word used in ``[NOW] <ordinal> session``: 0 → ``"first"``.

    Beyond the twentieth session: ``"21st"``, ``"22nd"``, ``"23rd"``, ``"24th"``, ...
    """
    if i < 0:
        raise ValueError(f"session index must be >= 0, got {i}")
    if i < len(_ORDINALS):
        return _ORDINALS[i]
    n = i + 1
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def _speaker_tag(name: str) -> str:
    return f"[{name}]"


def session_sequence(turns: list[tuple[str, str]]) -> str:
    """A session's turns as the released loop writes them: ``[Bob] hi [Alice] hello``."""
    return _join(*(f"{_speaker_tag(who)} {text.strip()}" for who, text in turns))


def memory_block(memories: list[tuple[str, list[str]]]) -> str:
    """``[MEMORY] m1 [LINK] l1 [LINK] l2 [MEMORY] m2 ...`` (retrieved memory + linked ones, §4.2)."""
    parts: list[str] = []
    for text, linked in memories:
        parts.append(f"{MEMORY_TOKEN} {text.strip()}")
        parts.extend(f"{LINK_TOKEN} {lt.strip()}" for lt in linked)
    return _join(*parts)


def generation_input(
    main: Speaker,
    partner: Speaker,
    memories: list[tuple[str, list[str]]],
    session_index: int,
    history: list[tuple[str, str]],
    bot_name: str,
) -> str:
    """Seq2seq input of the generation task (Appendix E.1 "Dialogue Generation")::

        generation: [MAIN] main-job [PARTNER] partner-job [MEMORY] m1 [LINK] linked ...
        [NOW] <ordinal> session [USER-NAME] utterance [BOT-NAME]

    ``memories``: (memory text, [texts of the memories linked to it]); ``history``: the current
    session's (speaker name, text) turns, the newest user utterance last; ``bot_name`` ends the
    sequence so the model writes the bot's next utterance. Example::

        generation: [Alice] teacher [Bob] doctor [MEMORY] Bob likes tea. [NOW] second session
        [Bob] Hi Alice! [Alice]
    """
    return _join(
        GENERATION_PREFIX,
        f"{_speaker_tag(main.name)} {main.job}",
        f"{_speaker_tag(partner.name)} {partner.job}",
        memory_block(memories),
        f"{NOW_TOKEN} {ordinal(session_index)} session",
        session_sequence(history),
        _speaker_tag(bot_name),
    )


def summarize_input(about: str, session_turns: list[tuple[str, str]], *, main: Speaker | None = None,
                    partner: Speaker | None = None, memories: list[tuple[str, list[str]]] | None = None,
                    session_index: int = 0) -> str:
    """Seq2seq input of the summarisation task (Appendix E.1 "Memory Summarization")::

        summarize [ABOUT WHO]: {FINAL GENERATION SEQUENCE}

    The final generation sequence is the session's last :func:`generation_input` — the speakers' names and
    jobs, the memories given at the last turn (``[MEMORY]``/``[LINK]``), ``[NOW] <ordinal> session`` and the
    whole session — so the summariser reads who said what, e.g.::

        summarize [ABOUT_Bob]: generation: [Alice] teacher [Bob] neighbour [NOW] first session
        [Bob] I adopted a cat. [Alice] How lovely!

    Without ``main``/``partner`` (older callers) only the session sequence follows the prefix.
    """
    if main is None or partner is None:
        return _join(f"summarize [ABOUT_{about}]:", session_sequence(session_turns))
    final = _join(
        GENERATION_PREFIX,
        f"{_speaker_tag(main.name)} {main.job}",
        f"{_speaker_tag(partner.name)} {partner.job}",
        memory_block(memories or []),
        f"{NOW_TOKEN} {ordinal(session_index)} session",
        session_sequence(session_turns),
    )
    return _join(f"summarize [ABOUT_{about}]:", final)


def summary_target(memory_texts: list[str]) -> str:
    """Target of the summarisation task: memories joined by ``[SEP]``, or ``[NONE]`` (§4.1)."""
    texts = [t.strip() for t in memory_texts if t and t.strip()]
    return f" {SEP_TOKEN} ".join(texts) if texts else NONE_TOKEN


_PROVENANCE_RE = re.compile(r"\s*\(about [^()]*, from [^()]* session\)\s*$")


_MARKER_FRAGMENT_RE = re.compile(r"\[?\s*[A-Z_]{0,8}\s*\]?")


def parse_summary(text: str) -> list[str]:
    """Split a summariser answer on ``[SEP]``; ``[NONE]`` (or nothing) → ``[]``.

    Strips whitespace, tokenizer leftovers (``</s>``, ``<pad>``, ``<|im_end|>``), stray ``[NONE]``
    pieces, any provenance suffix the model copied, and exact duplicates (order kept).
    """
    text = re.sub(r"</s>|<pad>|<\|im_end\|>|<\|endoftext\|>", " ", text or "")
    out: list[str] = []
    for piece in text.split(SEP_TOKEN):
        piece = _PROVENANCE_RE.sub("", piece.replace(NONE_TOKEN, " ")).strip(" \n\t-•*")
        piece = " ".join(piece.split())
        if _MARKER_FRAGMENT_RE.fullmatch(piece):  # e.g. "[NO]", "[SEP": a broken marker, not a memory
            continue
        if piece and piece not in out:
            out.append(piece)
    return out


def link_input(m1: str, m2: str) -> str:
    """Seq2seq input of the linking task (Appendix E.1 "Memory Connection")::

        memory sentence1: <m1> memory sentence2: <m2>

    By convention ``m1`` is the newer memory and ``m2`` the older one (links go newer → older).
    """
    return f"memory sentence1: {m1.strip()} memory sentence2: {m2.strip()}"


def provenance_suffix(about: str, session_index: int) -> str:
    """``(about <name>, from <ordinal> session)`` appended to each stored memory (docs/architecture.md, "EMMA release conventions")."""
    return f"(about {about}, from {ordinal(session_index)} session)"


def strip_provenance(text: str) -> str:
    """``text`` without a trailing ``(about <name>, from <ordinal> session)`` suffix."""
    return _PROVENANCE_RE.sub("", text or "").strip()


def with_provenance(text: str, about: str, session_index: int) -> str:
    """``text`` + its provenance suffix (not doubled if already present)."""
    text = _PROVENANCE_RE.sub("", text).strip()
    return f"{text} {provenance_suffix(about, session_index)}"


def seq2seq_input(task: str, **kwargs: Any) -> str:
    """Dispatch to :func:`generation_input`, :func:`summarize_input` or :func:`link_input`."""
    if task == "generation":
        return generation_input(**kwargs)
    if task == "summarize":
        return summarize_input(**kwargs)
    if task == "link":
        return link_input(**kwargs)
    if task == SESSION_SUMMARY_TASK:
        return session_summary_input(**kwargs)
    raise ValueError(f"unknown EMMA task {task!r}; expected one of {TASKS}")


# --------------------------------------------------------------------------- causal chat prompts

def _transcript(turns: list[tuple[str, str]]) -> str:
    return "\n".join(f"{who}: {text.strip()}" for who, text in turns)


def _generation_system(main: Speaker, partner: Speaker, memories, session_index: int) -> str:
    me = f"{main.name}, {main.job}" if main.job else main.name
    them = f"{partner.name}, {partner.job}" if partner.job else partner.name
    lines = [
        f"You are {me}. You are talking with {them}. This is your {ordinal(session_index)} "
        f"conversation session; your partner may change from session to session.",
        "Reply with one short, natural utterance as "
        f"{main.name}. Stay consistent with your memories.",
    ]
    if memories:
        lines.append("Your memories:")
        for text, linked in memories:
            lines.append(f"- {text.strip()}")
            lines.extend(f"  - linked: {lt.strip()}" for lt in linked)
    return "\n".join(lines)


def _generation_messages(main, partner, memories, session_index, history, bot_name) -> list[dict]:
    msgs: list[dict] = [
        {"role": "system", "content": _generation_system(main, partner, memories, session_index)}
    ]
    for who, text in history:
        role = "assistant" if who == bot_name else "user"
        content = text.strip()
        if who not in (bot_name, partner.name):  # e.g. an earlier partner in a full-history prompt
            content = f"{who}: {content}"
        if msgs[-1]["role"] == role:  # chat templates expect alternation: merge same-speaker runs
            msgs[-1] = {"role": role, "content": msgs[-1]["content"] + "\n" + content}
        else:
            msgs.append({"role": role, "content": content})
    if msgs[-1]["role"] != "user":
        msgs.append({"role": "user", "content": "(continue)"})
    return msgs


def _summarize_messages(about, session_turns, main=None, partner=None, memories=None,
                        session_index: int = 0, speakers: bool = True) -> list[dict]:
    """The summariser as chat messages, carrying what App. E.1's final generation sequence carries: who
    the main speaker and the partner are (names, jobs), the session ordinal, the memories given at the last
    turn and every turn with its speaker's name.  The instruction text is the one the shipped adapter was
    trained on; the speakers come first, as in the generation prompt (:func:`_generation_system`).

    ``speakers=False`` gives the prompt of adapters trained before the speakers were added (the shipped one:
    :func:`engine.systems.emma.dialogue.DialogueModule` decides from the adapter's ``training.json``) — the
    speakers' names are then only in the transcript lines."""
    who = ""
    if speakers and main is not None and partner is not None:
        me = f"{main.name}, {main.job}" if main.job else main.name
        them = f"{partner.name}, {partner.job}" if partner.job else partner.name
        who = f"You are {me}. You talked with {them} in your {ordinal(session_index)} conversation session. "
    system = (
        f"{who}You keep an egocentric memory of conversations. From the conversation, write the "
        f"significant events, experiences, appointments and emotions about {about}, as short "
        f"sentences from your own perspective, separated by {SEP_TOKEN}. If there is nothing "
        f"worth remembering about {about}, answer {NONE_TOKEN}."
    )
    user = f"Conversation:\n{_transcript(session_turns)}\n\nMemories about {about}:"
    if memories and speakers:
        user = "Memories you were given:\n" + "\n".join(f"- {t.strip()}" for t, _ in memories) + "\n\n" + user
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _link_messages(m1, m2) -> list[dict]:
    """The linking task as chat messages. Everything that does not depend on the pair comes
    before it (the instruction, the question), so all link prompts share one token prefix that
    :func:`engine.systems.generation.score_labels` runs once; the user message ends with the
    paper's own sequence ``memory sentence1: <m1> memory sentence2: <m2>`` (Appendix E.1)."""
    system = (
        "You connect memories. Two memory sentences are related when one refers to, continues "
        f"or updates the other. Answer with one word: {LINK_LABELS[0]} if they are related, "
        f"{LINK_LABELS[1]} if not."
    )
    user = f"Are these two memories related?\n{link_input(m1, m2)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def chat_messages(task: str, **kwargs: Any) -> list[dict]:
    """Instruction-prompt version of an EMMA task for causal chat models (Appendix H).

    ``task`` is ``"generation"``, ``"summarize"`` or ``"link"``; ``kwargs`` are the arguments of
    :func:`generation_input`, :func:`summarize_input` or :func:`link_input`. Returns chat
    messages (``{"role", "content"}``): a system message with the instruction (and, for
    generation, who is talking, the session ordinal and the retrieved memories with their links),
    then user messages (for generation the session's turns, alternating user/assistant with the
    bot's own turns as assistant). The answer is the next assistant turn, whose target text is the
    same as on the seq2seq path (:func:`summary_target`, a word of :data:`LINK_LABELS`, the reply).
    """
    if task == "generation":
        return _generation_messages(**kwargs)
    if task == "summarize":
        return _summarize_messages(**kwargs)
    if task == "link":
        return _link_messages(**kwargs)
    if task == SESSION_SUMMARY_TASK:
        return session_summary_messages(**kwargs)
    raise ValueError(f"unknown EMMA task {task!r}; expected one of {TASKS}")


# --------------------------------------------------------------------------- summary baseline

def session_summary_input(session_turns: list[tuple[str, str]]) -> str:
    """Seq2seq input for the session-summary ablation (Appendix I): one summary per session.

    ``summarize [SESSION]: <whole session sequence>`` — the same summariser, asked for a summary
    of the whole session instead of per-speaker egocentric memories.
    """
    return _join("summarize [SESSION]:", session_sequence(session_turns))


def session_summary_messages(session_turns: list[tuple[str, str]]) -> list[dict]:
    """Chat-prompt version of :func:`session_summary_input`."""
    system = "Summarise the conversation in two or three sentences."
    user = f"Conversation:\n{_transcript(session_turns)}\n\nSummary:"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
