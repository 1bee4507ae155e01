"""Results of loading a backbone: the model, its tokenizer, and what was decided and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol


class ModelNotFoundError(RuntimeError):
    """A model id or directory could not be loaded; the message says how to get it."""


@dataclass
class DevicePlan:
    """Where a model runs and why: ``device`` ("cuda", "cpu"), ``dtype`` name, 4-bit or not,
    and the human-readable reasons for every choice and fallback (shown to the user)."""

    device: str = "cpu"
    dtype: str = "float32"
    load_in_4bit: bool = False
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.device == "server":
            return "a generator server"
        q = ", 4-bit NF4" if self.load_in_4bit else ""
        return f"{self.device} {self.dtype}{q}"


@dataclass
class LoadedLM:
    """A generator backbone. ``kind`` is ``"causal"`` or ``"seq2seq"``."""

    model: Any
    tokenizer: Any
    kind: str
    name: str
    plan: DevicePlan = field(default_factory=DevicePlan)
    adapter: str | None = None  # the peft adapter loaded on top (directory or hub id), if any
    #: where generation runs: None = in this process on ``model`` (engine.systems.generation); else a
    #: :class:`GeneratorBackend`, e.g. an OpenAI-compatible server (engine.backbones.server), with ``model``
    #: None and ``adapter`` the served LoRA's name
    backend: Any = None
    config: Any = None  # the model's config when ``model`` is not in this process (context window)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def where(self) -> str:
        """In this process or on which server, for the UI and reports."""
        return self.backend.where if self.backend is not None else f"in process ({self.plan.summary()})"


class GeneratorBackend(Protocol):
    """Where a :class:`LoadedLM`'s generation runs when not in this process (docs/architecture.md,
    "Generator backends"). The in-process implementation is :mod:`engine.systems.generation` itself
    (``LoadedLM.backend is None``); :class:`engine.backbones.server.OpenAIServerBackend` is the other.

    Prompts arrive rendered (chat template applied locally with the same tokenizer), so both backends see
    the same text; ``adapter`` names the LoRA to apply for this request (None: the base model)."""

    where: str
    max_in_flight: int

    def stream(self, prompt: str, settings, cancel=None, adapter: str | None = None) -> Iterator[str]: ...

    def sample(self, prompt: str, n: int, settings, cancel=None, adapter: str | None = None) -> list[str]: ...

    def complete_many(self, prompts: list[str], settings, cancel=None, adapter: str | None = None,
                      progress=None) -> list[str]: ...

    def score_labels(self, prompts: list[str], labels, adapter: str | None = None, stats: dict | None = None,
                     progress=None): ...

    def continuation_logprobs(self, prompts: list[str], answers: list[str], adapter: str | None = None,
                              progress=None) -> list[tuple[float, int]]: ...

    def describe(self) -> dict: ...


@dataclass
class LoadedEncoder:
    """A BERT-family sentence encoder (mean pooling or [CLS], see ``pooling``)."""

    model: Any
    tokenizer: Any
    name: str
    pooling: str = "mean"
    plan: DevicePlan = field(default_factory=DevicePlan)
