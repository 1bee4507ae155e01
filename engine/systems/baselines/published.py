"""The published multi-session models the EMMA paper compares with in live chat (§6 "Memory Dynamics",
Table 6), for users who have their checkpoints; nothing is downloaded.

* **ReBot** (Jang et al. 2023, *Conversation Chronicles*): two BART-large seq2seq models published as
  ``jihyoung/rebot-generation`` (give it as the generator: ``--lm``) and ``jihyoung/rebot-summarization``
  (the ``summarization`` option). The released chat loop summarises each
  finished session with the summarisation module ("chronological summary") and generates from the sequence
  ``<relationship> R <time interval> summary_1 <time interval> summary_2 ... [now] <role_a> utterance
  <role_b>`` where each turn is ``<role> text``; the time interval is one of "A few hours after", "A few days
  after", "A few weeks after", "A few months after", "A couple of years after". MemLab's roles are the two
  speakers' jobs/relationships (their names when a job is empty) and R is "<main job> and <partner job>".
* **MSC 2.7B** (Xu et al. 2022, *Beyond Goldfish Memory*): BlenderBot-2.7B fine-tuned on Multi-Session Chat,
  released for ParlAI. Give MemLab a Hugging Face ``BlenderbotForConditionalGeneration`` directory as the
  generator (``--lm DIR``; convert the ParlAI checkpoint with transformers' ``convert_blenderbot_original_pytorch_checkpoint_to_pytorch``). It
  runs as the paper's truncation variant: every earlier session's utterances followed by the current ones,
  newline-separated as ParlAI writes a dialogue history, the oldest dropped first to fit 1024 tokens.

Both are hook-only :class:`SessionLogAgent` subclasses over their own small responder.
"""

from __future__ import annotations

import functools

from engine.data.model import MemoryUpdate, Speaker, Turn
from engine.systems import generation as gen
from engine.systems.session_agent import SessionLogAgent, StoreBackedAgent

from .published_config import MSC_TRUNCATE


def _role(s: Speaker) -> str:
    return s.job or s.name


class Seq2SeqResponder(gen.LMResponder):
    """Streaming, sampling and description for the published checkpoint (shared by ReBot and MSC). Both are
    seq2seq models; another generator runs the same sequences and ``describe`` says it is not the published
    architecture."""

    ARCHITECTURES: tuple[str, ...] = ()

    def describe(self) -> dict:
        lm = self.lm
        d = super().describe()
        arch = type(getattr(lm.model, "base_model", lm.model)).__name__
        if self.ARCHITECTURES and not any(a in arch or a in type(lm.model).__name__ for a in self.ARCHITECTURES):
            d["note"] = f"the generator is a {arch}, not the published {'/'.join(self.ARCHITECTURES)} checkpoint"
        return d


class ReBotResponder(Seq2SeqResponder):
    ARCHITECTURES = ("Bart",)

    def __init__(self, generator, summarizer, interval: str, settings=None):
        super().__init__(generator, settings)
        self.summarizer = summarizer
        self.interval = interval

    def reply_prompt(self, main, partner, memories, session_index, history, bot_name=None) -> str:
        head = f"<relationship> {_role(main)} and {_role(partner)}"
        past = " ".join(f"<{self.interval}> {text}" for text, _ in memories)
        names = {main.name: _role(main), partner.name: _role(partner)}

        def build(turns):
            now = " ".join(f"<{names.get(w, w)}> {t}" for w, t in turns)
            return " ".join(p for p in (head, past, "[now]", now, f"<{_role(main)}>") if p)

        prompt, _ = gen.fit_to_window(self.lm, build, history, reserve=self.settings.max_new_tokens)
        return prompt

    def summarize_session(self, main, partner, turns: list[tuple[str, str]]) -> str:
        names = {main.name: _role(main), partner.name: _role(partner)}
        text = " ".join(f"<{names.get(w, w)}> {t}" for w, t in turns)
        settings = gen.GenerationSettings(max_new_tokens=64, do_sample=False, repetition_penalty=1.0)
        return gen.generate_text(self.summarizer, text, settings).strip()

    def describe(self) -> dict:
        return {**super().describe(), "summarizer": self.summarizer.name}


class ReBotAgent(StoreBackedAgent):
    """ReBot: one chronological summary per session; all of them, oldest first, in the sequence."""

    name = "rebot"

    def turn_memories(self, history):
        mems = self.store.memories() if self.store else []
        return [(m.text, []) for m in mems], [m.id for m in mems]

    def store_session(self, turns: list[Turn], progress=None) -> MemoryUpdate:
        if progress:
            progress("summarising the session (ReBot summarisation module)", 0, 1)
        summary = self.responder.summarize_session(self.main, self.partner, [(t.speaker, t.text) for t in turns])
        if not summary:
            return MemoryUpdate(notes=["the summariser returned nothing"])
        m = self.store.add("session", summary, self.session_index, [t.id for t in turns])
        return MemoryUpdate(memories=[m])


class MscResponder(Seq2SeqResponder):
    ARCHITECTURES = ("Blenderbot",)

    def reply_prompt(self, main, partner, memories, session_index, history, bot_name=None) -> str:
        def build(turns):
            return "\n".join(t.strip() for _, t in turns)

        budget = min(MSC_TRUNCATE, gen.context_window(self.lm))
        kept = list(history)
        while len(kept) > 1 and gen.count_tokens(self.lm, build(kept)) > budget:
            kept = kept[1:]
        return build(kept)


class MscAgent(SessionLogAgent):
    """MSC 2.7B (truncation 1024): every earlier session's utterances, then the current session's."""

    name = "msc"

    def prompt_history(self):
        past = [(t["speaker"], t["text"]) for _, t in self.past_turns()]
        return past + super().prompt_history()


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str):
    """A published checkpoint, loaded once per process (every agent of the system shares it)."""
    from engine.backbones.loading import load_lm

    return load_lm(path, device=None if device == "auto" else device)


def build(which: str, models, options: dict):
    """The ``rebot`` / ``msc`` agent on the loaded generator (the published checkpoint given as the generator,
    e.g. ``--lm jihyoung/rebot-generation``); ReBot's summarisation module is loaded from its option."""
    settings = models.settings
    if which == "rebot":
        summarizer = _load(options["summarization"], options["device"]) if options["summarization"] else models.generator
        return ReBotAgent(ReBotResponder(models.generator, summarizer, options["interval"], settings))
    if which == "msc":
        return MscAgent(MscResponder(models.generator, settings))
    raise ValueError(f"no published system {which!r}")
