"""Held-out turns for ``memlab eval compare``: the same queries for every system.

A query is one main-speaker turn of an episode's **last session**, answered by a system that has been
given everything that happened before it — the true earlier sessions (``Agent.ingest_session``: logged
without generating, then the system's own session-end step: EMMA summarises and links, the summary
baseline summarises, RAG indexes, a per-user-training system trains) and the true turns of the held-out
session before the partner utterance it answers (``Agent.restore``).

Which turn: the first main-speaker turn of the last session that the data tags with memories (the turns
where memory matters, MiSC §3.3 "Memory Tagging"), else the last main-speaker turn of that session that
follows a partner turn (ConvAI2: the last bot turn, with the longest history). One query per episode, in
file order; ``limit`` keeps the first N.

Given knowledge: the episode's memories that no turn produced (ConvAI2's persona lines, formed in session 0
with no source turns) are what the bot knows from the start; they are the query's ``persona`` for the
persona metrics (Persona-F1, Con.S, Coh-Con.S) together with every memory formed before the held-out
session. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.data.model import Episode, Memory, Session, Turn


@dataclass(frozen=True)
class Query:
    id: str
    episode: Episode
    session_pos: int     # index into episode.sessions of the held-out session
    turn_pos: int        # index into that session's turns of the held-out main-speaker turn

    @property
    def session(self) -> Session:
        return self.episode.sessions[self.session_pos]

    @property
    def target(self) -> Turn:
        return self.session.turns[self.turn_pos]

    @property
    def reference(self) -> str:
        return self.target.text

    @property
    def utterance(self) -> str:
        """The partner utterance the held-out turn answers."""
        return self.session.turns[self.turn_pos - 1].text

    def prefix(self) -> list[dict]:
        """The true turns of the held-out session before that utterance."""
        return [{"speaker": t.speaker, "text": t.text} for t in self.session.turns[:self.turn_pos - 1]]

    def earlier_sessions(self) -> list[Session]:
        return self.episode.sessions[:self.session_pos]

    def given_memories(self) -> list[Memory]:
        """Memories no turn produced (e.g. ConvAI2 persona lines): known before the first session."""
        return [m for m in self.episode.memories if not m.source_turns and m.session <= self.session.index]

    def persona(self) -> list[str]:
        """What the bot should stay consistent with: the given memories and every memory formed before
        the held-out session (its own and its partners')."""
        seen, out = set(), []
        for m in self.episode.memories:
            if (not m.source_turns and m.session <= self.session.index) or m.session < self.session.index:
                if m.text not in seen:
                    seen.add(m.text)
                    out.append(m.text)
        return out


def pick_turn(episode: Episode, session: Session) -> int | None:
    """The held-out main-speaker turn of ``session`` (see the module docstring), or None."""
    main = episode.main.name
    candidates = [i for i, t in enumerate(session.turns)
                  if i >= 1 and t.speaker == main and session.turns[i - 1].speaker != main and t.text.strip()]
    if not candidates:
        return None
    tagged = [i for i in candidates if session.turns[i].memory_ids]
    return tagged[0] if tagged else candidates[-1]


def heldout_queries(episodes: list[Episode], limit: int | None = None) -> tuple[list[Query], list[str]]:
    """(queries, notes): one query per usable episode, in file order; notes say which episodes had none."""
    queries, notes = [], []
    for ep in episodes:
        if limit is not None and len(queries) >= limit:
            break
        if not ep.sessions:
            notes.append(f"episode {ep.id}: no sessions, skipped")
            continue
        pos = len(ep.sessions) - 1
        turn = pick_turn(ep, ep.sessions[pos])
        if turn is None:
            notes.append(f"episode {ep.id}: its last session has no main-speaker turn after a partner turn, skipped")
            continue
        queries.append(Query(f"{ep.id}#s{ep.sessions[pos].index}t{turn}", ep, pos, turn))
    return queries, notes
