"""Speaker-attributed training data for EMMA's summariser, linker and retriever from real dialogue corpora.

EMMA's summariser (paper §4.1, App. E.1: ``summarize [ABOUT WHO]: {FINAL GENERATION SEQUENCE}``) must learn
*who said what*: a memory about X comes from X's turns.  MiSC is not available offline, so besides the
project's starter corpus the summariser is taught from three public corpora in ``../shared/datasets``:

* **LoCoMo** — per-speaker *observations* with the evidence turns they come from.  A session is cut into
  windows of ``window`` consecutive turns; one of the two speakers is the main speaker (EMMA's egocentric
  owner, chosen per window), and for each speaker X the target is the observations about X whose evidence
  turns lie in the window (``[NONE]`` when there are none).  Observations are already written with the
  speaker's name ("Caroline attended ..."), which is exactly the attribution we want.  Also the source of
  link pairs (two observations of different sessions that answer one QA question together are related;
  observations of different sessions sharing no question are, as in a real chat, mostly unrelated) and of
  retrieval queries (a QA question → the observations whose evidence answers it).
* **ConvAI2** — a persona holder's persona sentences, each aligned to the turn that expresses it (cosine
  similarity of MiniLM vectors ≥ ``align_min``); the persona holder is the partner, the other side the main
  speaker; targets are the aligned sentences rewritten about the named partner ("i'm a nurse." → "Bob is a
  nurse.") by :func:`third_person`.
* **MaLP** — patient profiles: the patient (partner) states the profile's sentences over two turns to a
  doctor (main speaker; replies are real doctor turns of the MaLP dialogues); the target is the profile
  about the patient, and ``[NONE]`` about the doctor, who said nothing about themselves.

Every source has a deterministic held-out split (LoCoMo: whole conversations, :data:`LOCOMO_HELD_OUT`;
ConvAI2 and MaLP: every ``HELD_OUT_EVERY``-th record), so per-source figures are on data never trained on.
Every example's ``episode`` is ``"<source>:<record id>"``.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Callable, Sequence

from engine.data.model import Episode, Speaker
from engine.systems.emma import formats

#: ``$MEMLAB_DATASETS``, else ``../shared/datasets`` beside the project checkout.
DATASETS = Path(os.environ.get("MEMLAB_DATASETS") or Path(__file__).resolve().parents[3].parent / "shared" / "datasets")
LOCOMO_FILE = DATASETS / "locomo" / "locomo_dev.json"
CONVAI2_FILE = DATASETS / "convai2" / "personachat_valid.json"
MALP_PROFILES = DATASETS / "malp" / "patient_profiles.json"
MALP_DIALOGUES = DATASETS / "malp" / "medical_dialogues.json"
#: LoCoMo conversations never trained on (summariser, linker, retriever): the held-out evaluation set.
LOCOMO_HELD_OUT = ("conv-26", "conv-44")
HELD_OUT_EVERY = 10
SOURCES = ("starter", "locomo", "convai2", "malp")

_NAMES = ("Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Marco",
          "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wes", "Yuki", "Zane")
_JOBS = ("friend", "neighbour", "colleague", "cousin", "classmate", "old friend", "roommate", "brother",
         "sister", "teammate")


def _task_example():
    try:
        from engine.systems.emma.train_dialogue import TaskExample
    except ImportError:  # before the EMMA trainers moved into engine/systems/emma
        from engine.training.emma_dialogue import TaskExample
    return TaskExample


def is_held_out(source: str, record_id: str) -> bool:
    """The held-out split of each source (deterministic)."""
    if source == "locomo":
        return record_id in LOCOMO_HELD_OUT
    if source in ("convai2", "malp"):
        return int(record_id.rsplit("-", 1)[-1]) % HELD_OUT_EVERY == 0
    raise ValueError(f"unknown source {source!r}")


# ----------------------------------------------------------------------------- rewriting first person

_MODALS = {"can", "could", "will", "would", "shall", "should", "may", "might", "must", "did", "had", "was",
           "used", "also", "really", "just", "never", "always", "still", "often", "usually", "only", "recently",
           "currently", "now", "love", "like"}
_FIXED = [(r"\bi'm\b|\bi am\b", "{n} is"), (r"\bi've\b|\bi have\b", "{n} has"), (r"\bi'd\b", "{n} would"),
          (r"\bi'll\b", "{n} will"), (r"\bi do not\b|\bi don't\b|\bi dont\b", "{n} does not"),
          (r"\bi can't\b|\bi cannot\b|\bi cant\b", "{n} cannot"), (r"\bi was\b", "{n} was"),
          (r"\bi've been\b", "{n} has been"), (r"\bmyself\b", "themselves"), (r"\bmy\b", "{n}'s"),
          (r"\bmine\b", "{n}'s"), (r"\bme\b", "{n}"), (r"\bam i\b", "is {n}")]


def _third_person_verb(verb: str) -> str:
    if verb in _MODALS or verb.endswith(("ed", "s")) and not verb.endswith("ss"):
        return verb if verb not in ("love", "like") else verb + "s"
    if verb.endswith(("sh", "ch", "ss", "x", "o", "z")):
        return verb + "es"
    if verb.endswith("y") and len(verb) > 2 and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def detokenize(text: str) -> str:
    """ConvAI2's tokenised text → ordinary spacing (``"i 'm here ."`` → ``"i'm here."``)."""
    t = re.sub(r"\s+([.,!?;:])", r"\1", text.strip())
    t = re.sub(r"\s+'\s*(m|s|re|ve|ll|d|t)\b", r"'\1", t)
    t = re.sub(r"\s+n't\b", "n't", t)
    return " ".join(t.split())


def third_person(sentence: str, name: str) -> str:
    """A first-person sentence rewritten about ``name``: ``"i surf often."`` → ``"Bob surfs often."``.

    Rule-based and approximate (subject pronoun, possessives, the common auxiliaries and present-tense
    agreement); used only to turn persona/profile sentences into memory targets that name their subject."""
    s = detokenize(sentence)
    for pat, rep in _FIXED:
        s = re.sub(pat, rep.format(n=name), s, flags=re.IGNORECASE)
    s = re.sub(r"\bi (\w+)", lambda m: f"{name} {_third_person_verb(m.group(1).lower())}", s, flags=re.IGNORECASE)
    s = re.sub(r"\bi\b", name, s, flags=re.IGNORECASE)
    s = s[:1].upper() + s[1:]
    return s if s.endswith((".", "!", "?")) else s + "."


# ----------------------------------------------------------------------------- summarisation examples

def _summary_example(source: str, rid: str, main: Speaker, partner: Speaker, about: str,
                     turns: list[tuple[str, str]], session_index: int, targets: list[str]):
    TaskExample = _task_example()
    return TaskExample("summarize", {"about": about, "session_turns": turns, "main": main, "partner": partner,
                                     "memories": [], "session_index": session_index},
                       formats.summary_target(targets), f"{source}:{rid}")


def locomo_episodes(path: Path = LOCOMO_FILE) -> list[Episode]:
    from engine.data.locomo import read_locomo

    return read_locomo(path)


def locomo_summaries(episodes: Sequence[Episode], *, held_out: bool, window: int = 6, seed: int = 0) -> list:
    """Summarisation examples from LoCoMo observations (see the module docstring)."""
    rng = random.Random(seed)
    out = []
    for ep in episodes:
        if is_held_out("locomo", ep.id) != held_out:
            continue
        a, b = ep.main, ep.partners[0]
        obs = [m for m in ep.memories]
        for session in ep.sessions:
            for start in range(0, len(session.turns), window):
                chunk = session.turns[start:start + window]
                if len(chunk) < 4:
                    continue
                ids = {t.id for t in chunk}
                main, partner = (a, b) if rng.random() < 0.5 else (b, a)
                job = rng.choice(_JOBS)
                main, partner = Speaker(main.name, job), Speaker(partner.name, job)
                turns = [(t.speaker, t.text) for t in chunk]
                rid = f"{ep.id}-s{session.index}-w{start}"
                for about in (main.name, partner.name):
                    targets = [m.text for m in obs if m.about == about and m.session == session.index
                               and set(m.source_turns) & ids]
                    out.append(_summary_example("locomo", rid, main, partner, about, turns, session.index,
                                                targets))
    return out


def align_personas(persona: list[str], turns: list[str], embed: Callable[[list[str]], "object"],
                   align_min: float = 0.5) -> dict[int, int]:
    """persona sentence index → index of the turn that expresses it best (cosine ≥ ``align_min``)."""
    if not persona or not turns:
        return {}
    p = embed(persona)
    t = embed(turns)
    sims = p @ t.T
    out = {}
    for i in range(len(persona)):
        j = int(sims[i].argmax())
        if float(sims[i, j]) >= align_min:
            out[i] = j
    return out


def convai2_summaries(episodes: Sequence[Episode], embed: Callable, *, held_out: bool, window: int = 8,
                      align_min: float = 0.5, seed: int = 0) -> list:
    """Summarisation examples from ConvAI2 persona sentences aligned to the turns that express them."""
    rng = random.Random(seed)
    out = []
    for k, ep in enumerate(episodes):
        rid = f"dialogue-{k}"
        if is_held_out("convai2", rid) != held_out:
            continue
        turns = ep.sessions[0].turns
        owner_turns = [i for i, t in enumerate(turns) if t.speaker == ep.main.name]
        persona = [m.text for m in ep.memories if m.about == ep.main.name]
        aligned = align_personas(persona, [turns[i].text for i in owner_turns], embed, align_min)
        holder_name, other_name = rng.sample(_NAMES, 2)
        job = rng.choice(_JOBS)
        partner, main = Speaker(holder_name, job), Speaker(other_name, job)
        rename = {ep.main.name: holder_name}
        for start in range(0, len(turns), window):
            chunk = list(range(start, min(len(turns), start + window)))
            if len(chunk) < 4:
                continue
            dialogue = [(rename.get(turns[i].speaker, other_name), detokenize(turns[i].text)) for i in chunk]
            targets = [third_person(persona[p], holder_name) for p, j in sorted(aligned.items())
                       if owner_turns[j] in chunk]
            out.append(_summary_example("convai2", f"{rid}-w{start}", main, partner, holder_name, dialogue, 0,
                                        targets))
    return out


def _profile_sentences(raw: str) -> list[str] | None:
    try:
        prof = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(prof, dict):
        return None
    out = []
    for key in ("personal_information", "symptoms"):
        text = str(prof.get(key) or "")
        if "[insert" in text.lower() or not text.strip():
            continue
        text = re.sub(r"^\s*(hi|hello|hey|dear)\b[^,.!]{0,20}[,.!]\s*", "", text.strip().strip('"'), flags=re.I)
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 3]
    return out or None


def malp_summaries(*, held_out: bool, profiles_path: Path = MALP_PROFILES, dialogues_path: Path = MALP_DIALOGUES,
                   max_sentences: int = 3, seed: int = 0) -> list:
    """Summarisation examples from MaLP patient profiles (see the module docstring)."""
    rng = random.Random(seed)
    profiles = json.loads(Path(profiles_path).read_text(encoding="utf-8"))
    dialogues = json.loads(Path(dialogues_path).read_text(encoding="utf-8"))
    doctor_lines = []
    for d in dialogues:
        for rnd in d[1:3]:
            for v in rnd.values():
                text = re.sub(r"^\s*Doctor:\s*", "", str(v.get("Assistant", ""))).strip().strip('"').strip()
                if 5 <= len(text.split()) <= 45:
                    doctor_lines.append(text)
    out = []
    for k, raw in enumerate(profiles):
        rid = f"profile-{k}"
        if is_held_out("malp", rid) != held_out:
            continue
        sents = _profile_sentences(raw)
        if not sents:
            continue
        sents = sents[:max_sentences]
        name = rng.choice(_NAMES)
        main, partner = Speaker(rng.choice([n for n in _NAMES if n != name]), "doctor"), Speaker(name, "patient")
        half = max(1, len(sents) // 2)
        turns = [(name, " ".join(sents[:half])), (main.name, rng.choice(doctor_lines))]
        if sents[half:]:
            turns += [(name, " ".join(sents[half:])), (main.name, rng.choice(doctor_lines))]
        targets = [third_person(s, name) for s in sents]
        out.append(_summary_example("malp", rid, main, partner, name, turns, 0, targets))
        out.append(_summary_example("malp", rid, main, partner, main.name, turns, 0, []))
    return out


def starter_summaries(episodes: Sequence[Episode]) -> list:
    """The starter corpus's summarisation examples in the App. E.1 form (names, jobs, the memories given
    at the session's last main-speaker turn, ``[NOW]``)."""
    by_ep = []
    for ep in episodes:
        by_id = {m.id: m for m in ep.memories}
        for session in ep.sessions:
            turns = [(t.speaker, t.text) for t in session.turns]
            if not turns:
                continue
            last_tags = next((t.memory_ids for t in reversed(session.turns) if t.speaker == ep.main.name), [])
            given = [(formats.with_provenance(by_id[i].text, by_id[i].about, by_id[i].session), [])
                     for i in last_tags if i in by_id and by_id[i].session < session.index]
            for about in (ep.main.name, session.partner.name):
                texts = [m.text for m in ep.memories if m.session == session.index and m.about == about]
                ex = _summary_example("starter", ep.id, ep.main, session.partner, about, turns, session.index, texts)
                ex.fields["memories"] = given
                by_ep.append(ex)
    return by_ep


def locomo_session_summaries(episodes: Sequence[Episode], *, held_out: bool, max_turns: int = 16) -> list:
    """The session-summary task (``summarize [SESSION]``, App. I ablation) from LoCoMo's per-session
    summaries; sessions longer than ``max_turns`` are skipped (their summary covers turns we would cut)."""
    TaskExample = _task_example()
    out = []
    for ep in episodes:
        if is_held_out("locomo", ep.id) != held_out:
            continue
        summaries = ep.meta.get("session_summaries") or {}
        for session in ep.sessions:
            text = summaries.get(f"session_{session.index + 1}_summary") or summaries.get(str(session.index + 1))
            if not text or len(session.turns) > max_turns:
                continue
            out.append(TaskExample(formats.SESSION_SUMMARY_TASK,
                                   {"session_turns": [(t.speaker, t.text) for t in session.turns]},
                                   " ".join(str(text).split()[:60]), f"locomo:{ep.id}-s{session.index}"))
    return out


# ----------------------------------------------------------------------------- link pairs

def _stored(m) -> str:
    return formats.with_provenance(m.text, m.about, m.session)


def locomo_link_pairs(episodes: Sequence[Episode], *, held_out: bool, negatives_per_positive: float = 4.0,
                      seed: int = 0) -> list:
    """(newer, older) observation pairs of different sessions: ``positive`` when both carry evidence of one
    QA question, ``negative`` (sampled, ``negatives_per_positive`` per positive) when they share none."""
    TaskExample = _task_example()
    rng = random.Random(seed)
    out = []
    for ep in episodes:
        if is_held_out("locomo", ep.id) != held_out:
            continue
        by_turn: dict[str, list] = {}
        for m in ep.memories:
            for t in m.source_turns:
                by_turn.setdefault(t, []).append(m)
        related: set[tuple[str, str]] = set()
        for qa in ep.meta.get("qa", []):
            ms = {m.id: m for t in qa.get("evidence", []) for m in by_turn.get(t, [])}
            for a in ms.values():
                for b in ms.values():
                    if a.session > b.session:
                        related.add((a.id, b.id))
        by_id = {m.id: m for m in ep.memories}
        pos = sorted(related)
        for a, b in pos:
            out.append(TaskExample("link", {"m1": _stored(by_id[a]), "m2": _stored(by_id[b])}, "positive",
                                   f"locomo:{ep.id}"))
        mems = ep.memories
        want, tries = round(len(pos) * negatives_per_positive), 0
        seen = set(related)
        while want > 0 and tries < want * 20:
            tries += 1
            a, b = rng.choice(mems), rng.choice(mems)
            if a.session <= b.session or (a.id, b.id) in seen:
                continue
            seen.add((a.id, b.id))
            want -= 1
            out.append(TaskExample("link", {"m1": _stored(a), "m2": _stored(b)}, "negative", f"locomo:{ep.id}"))
    return out


def starter_link_pairs(episodes: Sequence[Episode], *, negatives_per_positive: float = 4.0,
                       cross_episode_share: float = 0.5, seed: int = 0) -> list:
    """The starter corpus's annotated links (``positive``) against a realistic share of unrelated pairs:
    unlinked pairs of the same episode and, for ``cross_episode_share`` of the negatives, pairs of
    memories from two different episodes (which never concern the same thing)."""
    TaskExample = _task_example()
    rng = random.Random(seed)
    out = []
    all_mems = [(ep.id, m) for ep in episodes for m in ep.memories]
    for ep in episodes:
        by_id = {m.id: m for m in ep.memories}
        linked = {frozenset((l.src, l.dst)) for l in ep.links}
        for l in ep.links:
            out.append(TaskExample("link", {"m1": _stored(by_id[l.src]), "m2": _stored(by_id[l.dst])}, "positive",
                                   f"starter:{ep.id}"))
        want = round(len(ep.links) * negatives_per_positive)
        order = {m.id: i for i, m in enumerate(ep.memories)}
        unlinked = [(a, b) for a in ep.memories for b in ep.memories
                    if order[a.id] > order[b.id] and frozenset((a.id, b.id)) not in linked]
        n_cross = round(want * cross_episode_share)
        for a, b in rng.sample(unlinked, min(len(unlinked), want - n_cross)):
            out.append(TaskExample("link", {"m1": _stored(a), "m2": _stored(b)}, "negative", f"starter:{ep.id}"))
        for _ in range(n_cross):
            a = rng.choice(ep.memories)
            other = rng.choice(all_mems)
            if other[0] != ep.id:
                out.append(TaskExample("link", {"m1": _stored(a), "m2": _stored(other[1])}, "negative",
                                       f"starter:{ep.id}"))
    return out


# ----------------------------------------------------------------------------- retrieval queries

def locomo_retrieval_queries(episodes: Sequence[Episode], *, held_out: bool) -> list:
    """LoCoMo QA questions as retrieval queries: the observations whose evidence answers the question are
    the positives, every other observation of the conversation is a candidate (hard negative)."""
    try:
        from engine.systems.emma.train_retriever import RetrievalQuery
    except ImportError:
        from engine.training.emma_retriever import RetrievalQuery
    out = []
    for ep in episodes:
        if is_held_out("locomo", ep.id) != held_out:
            continue
        stored = [_stored(m) for m in ep.memories]
        for qa in ep.meta.get("qa", []):
            gold = set(qa.get("evidence", []))
            pos = [s for s, m in zip(stored, ep.memories) if gold & set(m.source_turns)]
            if pos and qa.get("question"):
                out.append(RetrievalQuery(str(qa["question"]), pos, stored, f"locomo:{ep.id}"))
    return out


def convai2_retrieval_queries(episodes: Sequence[Episode], embed: Callable, *, held_out: bool,
                              align_min: float = 0.5, context_turns: int = 2) -> list:
    """ConvAI2: the turns just before a persona sentence is expressed → that persona sentence (stored as a
    memory about the speaker); the rest of the persona are the candidates."""
    try:
        from engine.systems.emma.train_retriever import RetrievalQuery
    except ImportError:
        from engine.training.emma_retriever import RetrievalQuery
    out = []
    for k, ep in enumerate(episodes):
        rid = f"dialogue-{k}"
        if is_held_out("convai2", rid) != held_out:
            continue
        turns = ep.sessions[0].turns
        owner_turns = [i for i, t in enumerate(turns) if t.speaker == ep.main.name]
        persona = [m.text for m in ep.memories if m.about == ep.main.name]
        stored = [formats.with_provenance(third_person(p, "Bob"), "Bob", 0) for p in persona]
        for p, j in align_personas(persona, [turns[i].text for i in owner_turns], embed, align_min).items():
            ti = owner_turns[j]
            ctx = "\n".join(detokenize(t.text) for t in turns[max(0, ti - context_turns):ti])
            if ctx.strip():
                out.append(RetrievalQuery(ctx, [stored[p]], stored, f"convai2:{rid}"))
    return out


def source_of(example) -> str:
    return str(getattr(example, "episode", "")).split(":", 1)[0] or "starter"
