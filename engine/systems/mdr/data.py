"""MDR examples from episodes (paper 000 §3.1): for every reply R(T) of the main speaker to a query Q(T), the
persona P and the dialogue history H = {(Q(i), R(i))}, i < T.  Torch-free.

Sources, all through :class:`engine.data.model.Episode`:

* ConvAI2 / PersonaChat (``engine.data.convai2``): P = the bot's persona sentences, H = the dialogue so far;
* MiSC-shaped episodes (the starter corpus, MiSC): P = the main speaker's memories about itself that exist at
  that point (given ones, or formed in an earlier session), H = the earlier sessions' and the current session's
  (partner utterance, main reply) pairs — the agent's memory of its own past conversations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.data.model import Episode


@dataclass
class MdrExample:
    query: str
    response: str
    persona: list[str]
    history: list[tuple[str, str]]
    episode: str = ""
    turn: str = ""
    partial_history: list[str] = field(default_factory=list)  # H_P (Eq. 7), filled once the teacher is trained
    selected: int | None = None  # index of H(index) in ``history``


def persona_at(episode: Episode, session_index: int) -> list[str]:
    """The main speaker's self-memories available in ``session_index``: given (no source turns) or formed
    in an earlier session."""
    main = episode.main.name
    return [m.text for m in episode.memories
            if m.owner == main and m.about == main and (not m.source_turns or m.session < session_index)]


def examples_from_episode(episode: Episode, max_history: int = 32) -> list[MdrExample]:
    """One example per main-speaker turn that answers a partner turn (the bot's opening line has no query)."""
    out: list[MdrExample] = []
    pairs: list[tuple[str, str]] = []
    main = episode.main.name
    for session in episode.sessions:
        persona = persona_at(episode, session.index)
        prev = None
        for turn in session.turns:
            if turn.speaker == main and prev is not None and prev.speaker != main:
                out.append(MdrExample(prev.text, turn.text, list(persona), list(pairs[-max_history:]),
                                      episode.id, turn.id))
                pairs.append((prev.text, turn.text))
            prev = turn
    return out


def examples_from_episodes(episodes, max_history: int = 32) -> list[MdrExample]:
    return [ex for ep in episodes for ex in examples_from_episode(ep, max_history)]
