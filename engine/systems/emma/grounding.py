"""Checks a memory candidate must pass before EMMA stores it: well-formed, and grounded in its subject's turns.

EMMA's summariser (§4.1) writes memories "about" a speaker; a memory about X is only trustworthy when X's own
turns of the session support it.  Two checks run on every candidate at session end, before anything is stored
(rejected candidates are returned with the reason and shown to the user; they are never stored):

1. **Well-formedness** (:func:`form_problem`): a sentence — at least ``MIN_WORDS`` words with letters, not a
   broken marker — and not a duplicate of a memory already stored or accepted (same words, or, with a
   memory encoder, a cosine similarity ≥ ``near_duplicate`` to one about the same person).
2. **Grounding by the summariser's own likelihood** (:class:`LikelihoodGrounding`): the per-token
   log-likelihood of the candidate as the summariser's answer ``summarize [ABOUT_X]: ...`` (App. E.1) is
   computed three times — with only X's turns of the session, with only the other speaker's turns, and with
   no turns.  The candidate is *supported* when X's turns raise its likelihood over no evidence by at least
   ``min_gain`` nats per token (a pointwise mutual information test: the memory is explained by what X said,
   not by the prompt alone), and *attributed* when X's turns explain it at least as well as the other
   speaker's turns (``lp(X) ≥ lp(other) − margin``).  "Alice told me she adopted a dog" about Alice, when Bob
   said "I adopted a dog", is better explained by Bob's turns and is rejected as misattributed.

Optionally the consistency classifier of the metrics (``grounding="consistency"``,
``ConsistencyClassifier.load_default().prob(premise_lines, hypothesis)``) replaces the likelihood test:
``prob(X's turns, memory) ≥ min_prob``.  Either is a learned check, never a word list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.data.model import Speaker
from engine.systems.emma import formats

MIN_WORDS = 4
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")


@dataclass
class Verdict:
    """The decision about one candidate: ``ok`` or the ``reason`` it was rejected; ``scores`` for display."""

    about: str
    text: str
    ok: bool
    reason: str = ""
    scores: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"about": self.about, "text": self.text, "reason": self.reason,
                "scores": {k: round(v, 3) if isinstance(v, float) else v for k, v in self.scores.items()}}


def normalise(text: str) -> str:
    return " ".join(w.lower() for w in _WORD.findall(formats.strip_provenance(text)))


def form_problem(text: str, seen: set[str]) -> str | None:
    """Why ``text`` is not a well-formed new memory sentence (``None`` when it is)."""
    words = _WORD.findall(text)
    if len(words) < MIN_WORDS:
        return f"not a sentence: {len(words)} word{'s' if len(words) != 1 else ''} (a memory needs at least {MIN_WORDS})"
    if normalise(text) in seen:
        return "duplicate of a memory already kept"
    return None


def continuation_logprobs(lm, prompts: list[str], answers: list[str], batch_size: int = 8) -> list[float]:
    """Mean per-token log-probability of each ``answers[i]`` as the model's answer to ``prompts[i]``
    (teacher forcing; causal: prompt + answer in one sequence, seq2seq: the answer as decoder target). On a
    generator server (``lm.backend``) the server echoes the answer's log-probabilities."""
    if lm.backend is not None:
        return [total / max(1, n) for total, n in lm.backend.continuation_logprobs(prompts, answers, adapter=lm.adapter)]
    import torch

    tok = lm.tokenizer
    if tok.pad_token_id is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    pad = tok.pad_token_id or 0
    out: list[float] = []
    with torch.inference_mode():
        for s in range(0, len(prompts), batch_size):
            ps, ans = prompts[s:s + batch_size], answers[s:s + batch_size]
            if lm.kind == "seq2seq":
                enc = tok(ps, return_tensors="pt", padding=True, truncation=True, max_length=1024)
                tgt = [tok(text_target=a)["input_ids"] for a in ans]
                n = max(len(t) for t in tgt)
                labels = torch.full((len(ps), n), -100, dtype=torch.long)
                for i, t in enumerate(tgt):
                    labels[i, :len(t)] = torch.tensor(t)
                enc = {k: v.to(lm.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                logits = lm.model(**enc, labels=labels.to(lm.model.device)).logits.float()
                targets = labels.to(logits.device)
            else:
                rows, starts = [], []
                for p, a in zip(ps, ans):
                    p_ids = tok(p, add_special_tokens=False)["input_ids"]
                    a_ids = tok(a, add_special_tokens=False)["input_ids"] or [tok.eos_token_id or pad]
                    rows.append(p_ids + a_ids)
                    starts.append(len(p_ids))
                n = max(len(r) for r in rows)
                ids = torch.full((len(rows), n), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), n), dtype=torch.long)
                targets = torch.full((len(rows), n), -100, dtype=torch.long)
                for i, (r, st) in enumerate(zip(rows, starts)):
                    ids[i, :len(r)] = torch.tensor(r)
                    mask[i, :len(r)] = 1
                    targets[i, st:len(r)] = torch.tensor(r[st:])
                dev = lm.model.device
                logits = lm.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()[:, :-1]
                targets = targets[:, 1:].to(logits.device)
            logp = torch.log_softmax(logits, dim=-1)
            valid = targets != -100
            picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid
            out += (picked.sum(-1) / valid.sum(-1).clamp(min=1)).tolist()
    return out


class LikelihoodGrounding:
    """The summariser's own likelihood as the grounding test (see the module docstring)."""

    name = "likelihood"

    def __init__(self, lm, *, min_gain: float = 0.3, margin: float = 0.0, speakers: bool = True):
        self.lm, self.min_gain, self.margin, self.speakers = lm, min_gain, margin, speakers

    def _prompt(self, about: str, turns, main: Speaker, partner: Speaker, session_index: int) -> str:
        from engine.systems import generation as gen

        kw = dict(about=about, session_turns=turns, main=main, partner=partner, memories=[],
                  session_index=session_index)
        return gen.render_prompt(self.lm, formats.summarize_input(**kw),
                                 formats.chat_messages("summarize", **kw, speakers=self.speakers))

    def judge(self, candidates: list[tuple[str, str]], turns: list[tuple[str, str]], main: Speaker,
              partner: Speaker, session_index: int) -> list[Verdict]:
        if not candidates:
            return []
        names = (main.name, partner.name)
        prompts, answers = [], []
        for about, text in candidates:
            other = names[1] if about == names[0] else names[0]
            own = [t for t in turns if t[0] == about]
            theirs = [t for t in turns if t[0] == other]
            for evidence in (own, theirs, []):
                prompts.append(self._prompt(about, evidence, main, partner, session_index))
                answers.append(text)
        lps = continuation_logprobs(self.lm, prompts, answers)
        out = []
        for k, (about, text) in enumerate(candidates):
            own, theirs, none = lps[3 * k:3 * k + 3]
            other = names[1] if about == names[0] else names[0]
            scores = {"own": own, "other": theirs, "none": none, "gain": own - none}
            if own - none < self.min_gain:
                out.append(Verdict(about, text, False, f"not supported by {about}'s turns (their words raise its "
                                   f"likelihood by {own - none:.2f} nats/token < {self.min_gain})", scores))
            elif own < theirs - self.margin:
                out.append(Verdict(about, text, False, f"better supported by {other}'s turns than by {about}'s "
                                   f"({theirs:.2f} vs {own:.2f} nats/token): said by {other}, not about {about}",
                                   scores))
            else:
                out.append(Verdict(about, text, True, "", scores))
        return out


class ConsistencyGrounding:
    """The metrics' consistency classifier as the grounding test: p(memory is supported by X's turns)."""

    name = "consistency"

    def __init__(self, classifier=None, *, min_prob: float = 0.5):
        if classifier is None:
            from engine.metrics.consistency_model import ConsistencyClassifier

            classifier = ConsistencyClassifier.load_default()
        self.classifier, self.min_prob = classifier, min_prob

    def judge(self, candidates, turns, main, partner, session_index) -> list[Verdict]:
        out = []
        for about, text in candidates:
            own = [t for who, t in turns if who == about]
            p = float(self.classifier.prob(own, text)) if own else 0.0
            if p < self.min_prob:
                out.append(Verdict(about, text, False, f"not supported by {about}'s turns (consistency "
                                   f"{p:.2f} < {self.min_prob})", {"consistency": p}))
            else:
                out.append(Verdict(about, text, True, "", {"consistency": p}))
        return out


def check_candidates(candidates: list[tuple[str, str]], turns: list[tuple[str, str]], main: Speaker,
                     partner: Speaker, session_index: int, *, grounding, existing: list[tuple[str, str]],
                     embed=None, near_duplicate: float = 0.95) -> list[Verdict]:
    """Well-formedness, then grounding, for every (about, text) candidate; ``existing`` are the (about, text)
    memories already stored.  ``embed(texts) -> L2-normalised vectors`` enables near-duplicate detection."""
    seen = {normalise(t) for _, t in existing}
    verdicts: list[Verdict | None] = []
    for about, text in candidates:
        why = form_problem(text, seen)  # a fragment, or a duplicate of a memory already stored
        verdicts.append(Verdict(about, text, False, why) if why else None)
    if embed is not None:
        todo = [i for i, v in enumerate(verdicts) if v is None]
        pool = [(a, t) for a, t in existing]
        if todo and pool:
            import numpy as np

            cv = np.asarray(embed([candidates[i][1] for i in todo]))
            pv = np.asarray(embed([t for _, t in pool]))
            sims = cv @ pv.T
            for row, i in enumerate(todo):
                same = [j for j, (a, _) in enumerate(pool) if a == candidates[i][0]]
                if same and float(sims[row, same].max()) >= near_duplicate:
                    j = same[int(sims[row, same].argmax())]
                    verdicts[i] = Verdict(*candidates[i], False, f"near-duplicate of a stored memory "
                                          f"({float(sims[row, j]):.2f} cosine): {formats.strip_provenance(pool[j][1])!r}")
    todo = [i for i, v in enumerate(verdicts) if v is None]
    if grounding is not None and todo:
        judged = grounding.judge([candidates[i] for i in todo], turns, main, partner, session_index)
        for i, v in zip(todo, judged):
            verdicts[i] = v
    out = [v or Verdict(*candidates[i], True) for i, v in enumerate(verdicts)]
    kept: set[str] = set()
    for v in out:  # duplicates within the session: only of a candidate that is kept (a rejected one hides nothing)
        if v.ok:
            key = normalise(v.text)
            if key in kept:
                v.ok, v.reason = False, "duplicate of a memory kept from this session"
            kept.add(key)
    return out
