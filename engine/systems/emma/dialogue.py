"""EMMA's dialogue module (paper §4.1): one language model doing generation, memory summarisation
and memory linking, selected by the task's prefix (seq2seq) or instruction prompt (causal chat).

It is the :class:`engine.systems.session_agent.Responder` of EMMA and of the baselines, which run on the same
module (docs/architecture.md, "Baselines").
"""

from __future__ import annotations


import numpy as np

from engine.backbones.types import LoadedLM
from engine.data.model import Speaker
from engine.systems import generation as gen
from engine.systems.emma import formats

SUMMARY_MAX_NEW_TOKENS = 64  # Appendix E.1: maximum target length 64


def summary_prompt_kind(lm) -> tuple[bool, str]:
    """(name the speakers in the causal summariser prompt?, why) from the adapter's ``training.json``."""
    import json
    from pathlib import Path

    if lm.kind != "causal" or not getattr(lm, "adapter", None):
        return True, "summariser prompt with the speakers (App. E.1)"
    f = Path(str(lm.adapter)) / "training.json"
    try:
        declared = json.loads(f.read_text()).get("summary_prompt")
    except (OSError, ValueError):
        declared = None
    if declared == "speakers":
        return True, "summariser prompt with the speakers (App. E.1), as the adapter was trained"
    return False, ("summariser prompt without the speakers' roles: the adapter was trained on that prompt "
                   f"({f} has no \"summary_prompt\": \"speakers\")")


class DialogueModule(gen.LMResponder):
    """Prompts, generation and label scoring for the three EMMA tasks on one :class:`LoadedLM`."""

    def __init__(self, lm: LoadedLM, settings: gen.GenerationSettings | None = None,
                 *, link_batch_size: int = 32):
        if lm.kind not in ("causal", "seq2seq"):
            raise ValueError(f"LoadedLM.kind must be 'causal' or 'seq2seq', got {lm.kind!r}")
        super().__init__(lm, settings)
        self.summary_settings = gen.GenerationSettings(
            max_new_tokens=SUMMARY_MAX_NEW_TOKENS, do_sample=False, repetition_penalty=1.0)
        # No repetition penalty: a memory sentence re-uses the session's words and names; with 1.2 the
        # trained adapter garbled its answers (e.g. "[NO]" instead of "[NONE]").
        self.link_batch_size = link_batch_size
        # The chat-prompt summariser names the speakers (App. E.1 content) unless the adapter on the model was
        # trained on the earlier prompt without them (its training.json has no "summary_prompt": "speakers"):
        # a prompt the adapter never saw made the shipped one write nothing about the partner.
        self.summary_speakers, self.summary_prompt_note = summary_prompt_kind(lm)
        self.last_link_stats: dict = {}  # how the last linking call ran (prefix reuse or why not)

    # -------------------------------------------------------------- generation (§4.1 "Dialogue Generator")
    def reply_prompt(self, main: Speaker, partner: Speaker, memories: list[tuple[str, list[str]]],
                     session_index: int, history: list[tuple[str, str]], bot_name: str | None = None) -> str:
        """The generation prompt, dropping the oldest turns until it fits the context window."""
        bot = bot_name or main.name

        def build(h):
            args = dict(main=main, partner=partner, memories=memories, session_index=session_index,
                        history=h, bot_name=bot)
            return gen.render_prompt(self.lm, formats.generation_input(**args),
                                     formats.chat_messages("generation", **args))

        prompt, _dropped = gen.fit_to_window(self.lm, build, history, reserve=self.settings.max_new_tokens)
        return prompt


    # -------------------------------------------------------------- summarisation (§4.1 "Memory Summarizer")
    def summarize(self, about: str, session_turns: list[tuple[str, str]], *, main: Speaker | None = None,
                  partner: Speaker | None = None, memories: list[tuple[str, list[str]]] | None = None,
                  session_index: int = 0) -> list[str]:
        """Memory sentences about ``about`` from the whole session (``[SEP]``/``[NONE]`` parsed).

        The input is App. E.1's ``summarize [ABOUT WHO]: {FINAL GENERATION SEQUENCE}``: with ``main`` and
        ``partner`` it carries both speakers' names and jobs, the memories given at the last turn and the
        session ordinal, so the summariser reads who said what (:func:`formats.summarize_input`)."""
        def build(turns):
            kw = dict(about=about, session_turns=turns, main=main, partner=partner, memories=memories,
                      session_index=session_index)
            return gen.render_prompt(self.lm, formats.summarize_input(**kw),
                                     formats.chat_messages("summarize", **kw, speakers=self.summary_speakers))

        prompt, _ = gen.fit_to_window(self.lm, build, session_turns, reserve=SUMMARY_MAX_NEW_TOKENS)
        return formats.parse_summary(gen.generate_text(self.lm, prompt, self.summary_settings))

    def summarize_session(self, session_turns: list[tuple[str, str]]) -> str:
        """One summary of the whole session (the summary-based ablation, Appendix I)."""
        def build(turns):
            return gen.render_prompt(self.lm, formats.session_summary_input(turns),
                                     formats.session_summary_messages(turns))

        prompt, _ = gen.fit_to_window(self.lm, build, session_turns, reserve=SUMMARY_MAX_NEW_TOKENS)
        parts = formats.parse_summary(gen.generate_text(self.lm, prompt, self.summary_settings))
        return " ".join(parts)

    # -------------------------------------------------------------- linking (§4.1 "Memory Linker")
    def link_prompt(self, m1: str, m2: str) -> str:
        return gen.render_prompt(self.lm, formats.link_input(m1, m2),
                                 formats.chat_messages("link", m1=m1, m2=m2))

    def link_probabilities(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """p(``positive``) for each (newer, older) memory pair, scoring both label words in batches
        (one forward pass per batch of pairs), never by sampling a generation per pair.

        On a causal model the instruction shared by every link prompt is run once and reused
        (:func:`engine.systems.generation.score_labels`); ``last_link_stats`` says how it ran."""
        if not pairs:
            return np.zeros(0)
        prompts = [self.link_prompt(a, b) for a, b in pairs]
        stats: dict = {"pairs": len(pairs)}
        logps = gen.score_labels(self.lm, prompts, formats.LINK_LABELS, batch_size=self.link_batch_size,
                                 stats=stats)
        self.last_link_stats = stats
        return gen.label_probabilities(logps)[:, 0]
