"""Results of loading a backbone: the model, its tokenizer, and what was decided and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


@dataclass
class LoadedEncoder:
    """A BERT-family sentence encoder (mean pooling or [CLS], see ``pooling``)."""

    model: Any
    tokenizer: Any
    name: str
    pooling: str = "mean"
    plan: DevicePlan = field(default_factory=DevicePlan)
