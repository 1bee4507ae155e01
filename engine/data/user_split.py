"""Per-user data for user-level personalisation (MiLP §3.1/§3.4): the paper's user-oriented 70/10/20 split
and ConvAI2 grouped per persona (torch-free).

A *user* is the person whose content personalises the model: a MaLP patient (one dialogue each, see
:mod:`engine.data.malp`) or a ConvAI2 persona — the Xpersona release repeats each bot persona over several
dialogues, so the dialogues sharing one persona form that user's history.
"""

from __future__ import annotations

import random

from .model import Episode


def user_split(ids: list[str], seed: int = 0, fractions=(0.7, 0.1, 0.2)) -> dict[str, str]:
    """The paper's user-oriented split (§3.4: 70% train, 10% valid, 20% test), by user, deterministic."""
    order = sorted(set(ids))
    random.Random(seed).shuffle(order)
    n_train = int(round(fractions[0] * len(order)))
    n_valid = int(round(fractions[1] * len(order)))
    return {uid: ("train" if i < n_train else "valid" if i < n_train + n_valid else "test")
            for i, uid in enumerate(order)}


def convai2_users(episodes: list[Episode], seed: int = 0) -> list[Episode]:
    """ConvAI2 per persona: the dialogues of one persona become the sessions of one episode (one user),
    in file order, with ``meta["split"]`` from :func:`user_split`."""
    groups: dict[tuple, list[Episode]] = {}
    for ep in episodes:
        key = tuple(sorted(m.text for m in ep.memories if m.about == ep.main.name))
        groups.setdefault(key, []).append(ep)
    users = []
    for n, (key, eps) in enumerate(groups.items()):
        first = eps[0]
        sessions = []
        for i, ep in enumerate(eps):
            for s in ep.sessions:
                sessions.append(type(s)(len(sessions), s.partner, s.event,
                                        [type(t)(f"s{len(sessions)}{t.id}", t.speaker, t.text, list(t.memory_ids))
                                         for t in s.turns], s.date))
        users.append(Episode(f"persona-{n:04d}", first.main, list(first.partners), sessions, list(first.memories),
                             [], first.source, {"format": "convai2-per-persona", "dialogues": len(eps)}))
    split = user_split([u.id for u in users], seed)
    for u in users:
        u.meta["split"] = split[u.id]
    return users
