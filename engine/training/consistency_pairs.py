"""Labelled pairs for the persona-consistency classifier (``memlab train consistency``).

Two tasks (see :mod:`engine.metrics.consistency_model`):

**consistency** — ``(premise lines, hypothesis, label)``: does the hypothesis express / is it supported by
the premise lines?

* *ConvAI2* (PersonaChat; Zhang et al. 2018): most of a speaker's utterances express none of its persona
  lines ("hi, how are you?"), so "an utterance against its own persona" is not a positive by itself.
  Each bot utterance is aligned to its persona lines by content-word overlap (Porter-stemmed, stop words
  removed) and MiniLM cosine similarity:

  - positive: some line shares >= 1 content stem with the utterance *and* has cosine >= ``pos_cos``,
    or shares >= 2 stems and has cosine >= ``pos_cos_two_stems``;
  - negative ("says nothing of the persona"): no line shares a stem and every cosine is < ``neutral_cos``;
  - negative ("another person's fact"): an utterance that is a positive of *another* dialogue, when it
    shares no stem with this persona and every cosine is < ``other_cos`` (so it states something this
    persona does not);
  - everything between the bands is left out (ambiguous).

* *starter corpus* (MiSC-shaped, generated from the project's templates): its memories name the turns they
  summarise (``source_turns``) and its tags name the memories a turn used — labels that come from how the
  data was written, not from a similarity rule:

  - grounding positive: premise = the source turns of a memory about X, hypothesis = the memory; negatives:
    the same premise against a memory about someone else (same episode, another session) or from another
    episode;
  - tag positive: premise = [the memory], hypothesis = the turn tagged with it; negative: the same memory
    against an untagged turn of another session, or a tagged turn of another episode.

**coherence** — ``(query, response, label)``: ConvAI2 (user turn, the bot's reply) positives against the
reply to another turn of the same dialogue (>= 2 turns away) and a reply from another dialogue; starter
corpus adjacent turns likewise.

Splits are by dialogue / episode (a dialogue's pairs are all on one side), seeded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

SILENCE = "__SILENCE__"


@dataclass(frozen=True)
class Pair:
    task: str          # "consistency" | "coherence"
    first: list[str] | str  # premise lines (consistency) or the query (coherence)
    second: str
    label: int
    source: str        # e.g. "convai2:aligned", "starter:grounding"

    def first_text(self) -> str:
        from engine.metrics.consistency_model import premise_text

        return premise_text(self.first) if self.task == "consistency" else str(self.first)


@dataclass
class AlignSettings:
    pos_cos: float = 0.55
    pos_cos_two_stems: float = 0.40
    neutral_cos: float = 0.30
    other_cos: float = 0.35


def _stems(text: str) -> set[str]:
    from nltk.stem.porter import PorterStemmer

    from engine.metrics.text import content_tokens

    stem = _stems.stemmer = getattr(_stems, "stemmer", None) or PorterStemmer()
    return {stem.stem(t) for t in content_tokens(text) if len(t) > 1}


def split_indices(n: int, held_out: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    k = max(1, int(round(n * held_out))) if n > 1 else 0
    return sorted(order[k:]), sorted(order[:k])


def _bot_turns(dialogue) -> list[tuple[str, str]]:
    """(user utterance, bot reply) pairs of one ConvAI2 dialogue (silence as an empty query)."""
    out = []
    for pair in dialogue:
        if len(pair) != 2:
            continue
        user, bot = pair
        out.append(("" if user == SILENCE else user, bot))
    return out


def convai2_pairs(dialogues: Sequence[dict], embed: Callable[[list[str]], "object"], *, seed: int = 0,
                  settings: AlignSettings | None = None, other_per_dialogue: int = 3) -> tuple[list[Pair], dict]:
    """Consistency and coherence pairs from Xpersona-shaped ConvAI2 dialogues; ``embed(texts)`` returns
    unit-norm vectors (a ``(len, d)`` array). Also returns counts of the alignment bands."""
    import numpy as np

    s = settings or AlignSettings()
    rng = random.Random(seed)
    personas = [[p for p in d["persona"] if p.strip()] for d in dialogues]
    turns = [_bot_turns(d["dialogue"]) for d in dialogues]
    lines = [p for ps in personas for p in ps]
    utts = [b for ts in turns for _, b in ts]
    line_vec = np.asarray(embed(lines))
    utt_vec = np.asarray(embed(utts))
    line_stems = [_stems(x) for x in lines]
    utt_stems = [_stems(x) for x in utts]
    # offsets into the flat arrays
    line_off, utt_off = [0], [0]
    for ps, ts in zip(personas, turns):
        line_off.append(line_off[-1] + len(ps))
        utt_off.append(utt_off[-1] + len(ts))

    def align(u: int, d: int):
        lo, hi = line_off[d], line_off[d + 1]
        cos = line_vec[lo:hi] @ utt_vec[u]
        shared = [len(utt_stems[u] & line_stems[j]) for j in range(lo, hi)]
        return cos, shared

    def band(cos, shared) -> str:
        for c, k in zip(cos, shared):
            if (k >= 1 and c >= s.pos_cos) or (k >= 2 and c >= s.pos_cos_two_stems):
                return "positive"
        if max(shared, default=0) == 0 and float(max(cos, default=0.0)) < s.neutral_cos:
            return "neutral"
        return "ambiguous"

    pairs: list[Pair] = []
    counts = {"utterances": len(utts), "positive": 0, "neutral": 0, "ambiguous": 0, "other_person": 0}
    positives_by_dialogue: list[list[int]] = []
    for d in range(len(dialogues)):
        pos, neu = [], []
        for k in range(utt_off[d], utt_off[d + 1]):
            b = band(*align(k, d))
            counts[b] += 1
            (pos if b == "positive" else neu if b == "neutral" else []).append(k)
        positives_by_dialogue.append(pos)
        for k in pos:
            pairs.append(Pair("consistency", personas[d], utts[k], 1, "convai2:aligned"))
        # as many "says nothing of the persona" negatives as positives (at most), chosen at random
        for k in rng.sample(neu, min(len(neu), max(1, len(pos)))):
            pairs.append(Pair("consistency", personas[d], utts[k], 0, "convai2:neutral"))
    # another person's fact: positives of other dialogues that this persona does not share
    all_pos = [(d, k) for d, ks in enumerate(positives_by_dialogue) for k in ks]
    for d in range(len(dialogues)):
        want = max(other_per_dialogue, len(positives_by_dialogue[d]) // 2)
        got, tries = 0, 0
        while got < want and tries < 20 * want and all_pos:
            tries += 1
            d2, k = all_pos[rng.randrange(len(all_pos))]
            if d2 == d or personas[d2] == personas[d]:
                continue
            cos, shared = align(k, d)
            if max(shared, default=0) == 0 and float(max(cos, default=0.0)) < s.other_cos:
                pairs.append(Pair("consistency", personas[d], utts[k], 0, "convai2:other-person"))
                counts["other_person"] += 1
                got += 1
    # coherence: the reply to this query vs a reply to another turn / another dialogue
    for d, ts in enumerate(turns):
        for i, (q, r) in enumerate(ts):
            if not q.strip():
                continue
            pairs.append(Pair("coherence", q, r, 1, "convai2:reply"))
            far = [j for j in range(len(ts)) if abs(j - i) >= 2]
            if far:
                pairs.append(Pair("coherence", q, ts[rng.choice(far)][1], 0, "convai2:same-dialogue"))
            d2 = rng.randrange(len(turns))
            if d2 != d and turns[d2]:
                pairs.append(Pair("coherence", q, rng.choice(turns[d2])[1], 0, "convai2:other-dialogue"))
    return pairs, counts


def starter_pairs(episodes, *, seed: int = 0) -> list[Pair]:
    """Consistency (grounding, tags) and coherence pairs from MiSC-shaped episodes with memories/tags."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    eps = list(episodes)
    for ei, e in enumerate(eps):
        text = {t.id: t for _, t in e.turns()}
        session_of = {t.id: s.index for s, t in e.turns()}
        others = [x for j, x in enumerate(eps) if j != ei]
        for m in e.memories:
            src = [text[t] for t in m.source_turns if t in text]
            spoken = [t.text for t in src if t.speaker == m.about] or [t.text for t in src]
            if not spoken:
                continue
            pairs.append(Pair("consistency", spoken, m.text, 1, "starter:grounding"))
            elsewhere = [x for x in e.memories if x.about != m.about and x.session != m.session]
            if elsewhere:
                pairs.append(Pair("consistency", spoken, rng.choice(elsewhere).text, 0, "starter:grounding-other"))
            if others:
                o = rng.choice(others)
                if o.memories:
                    pairs.append(Pair("consistency", spoken, rng.choice(o.memories).text, 0,
                                      "starter:grounding-other-episode"))
        mem = {m.id: m for m in e.memories}
        for s, t in e.turns():
            for mid in t.memory_ids:
                if mid not in mem:
                    continue
                pairs.append(Pair("consistency", [mem[mid].text], t.text, 1, "starter:tag"))
                untagged = [u for s2, u in e.turns() if not u.memory_ids and s2.index != s.index
                            and u.id not in mem[mid].source_turns and len(u.text.split()) > 3]
                if untagged:
                    pairs.append(Pair("consistency", [mem[mid].text], rng.choice(untagged).text, 0, "starter:untagged"))
                if others:
                    o = rng.choice(others)
                    tagged = [u for _, u in o.turns() if u.memory_ids]
                    if tagged:
                        pairs.append(Pair("consistency", [mem[mid].text], rng.choice(tagged).text, 0,
                                          "starter:tag-other-episode"))
        for s in e.sessions:
            ts = s.turns
            for i in range(1, len(ts)):
                pairs.append(Pair("coherence", ts[i - 1].text, ts[i].text, 1, "starter:reply"))
                far = [j for j in range(len(ts)) if abs(j - i) >= 3]
                if far:
                    pairs.append(Pair("coherence", ts[i - 1].text, ts[rng.choice(far)].text, 0, "starter:same-session"))
        del session_of
    return pairs


def persona_nli_pairs(directory) -> list[Pair]:
    """The persona_nli smoke sample: ``premise \\t hypothesis`` rows, positive and negative files."""
    from pathlib import Path

    out = []
    for name, label in (("nli_positive.tsv", 1), ("nli_negative.tsv", 0)):
        path = Path(directory) / name
        for line in path.read_text(encoding="utf-8").splitlines():
            if "\t" not in line:
                continue
            premise, hyp = line.split("\t", 1)
            out.append(Pair("consistency", [premise.strip()], hyp.strip(), label, "persona_nli"))
    return out
