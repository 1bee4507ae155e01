"""EMMA presets: which backbone, encoders, pooling and training method a run uses, and the name it shows.

* ``embedded`` — what MemLab ships and runs offline: SmolLM2-135M-Instruct (causal, chat-template prompts)
  with the shipped EMMA LoRA adapter, all-MiniLM-L6-v2 as context and memory encoder (mean pooling, the
  pooling it was trained with) or the shipped retriever when it beat the untrained encoder.
* ``emma-paper`` — the published configuration (paper §4, App. E; papers/INDEX.md): FLAN-T5-Large with a
  LoRA adapter (r=32, alpha=32, dropout 0.1; QLoRA 4-bit NF4 when CUDA is present, lr 1e-3, max input
  1024, target 64), two ``bert-base-uncased`` encoders (context max 512, memory max 32) compared by their
  [CLS] vectors.  It needs those weights locally (a hub id in the local cache or a directory).

The label is what the app and the CLI show for the running system: ``"EMMA · SmolLM2-135M"`` or
``"EMMA · FLAN-T5-Large (paper)"``; another backbone is named by its own name (:func:`system_label`).
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    backbone: str | None  # None: the embedded SmolLM2-135M-Instruct
    encoder: str | None  # None: the embedded all-MiniLM-L6-v2
    memory_encoder: str | None
    pooling: str | None  # None: the encoder's own
    adapter: str  # "auto" (the shipped/user-trained adapter for this backbone), "none" or a directory
    quantize_4bit_on_cuda: bool
    lora_r: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lr: float = 1e-3
    max_input: int = 1024
    max_target: int = 64
    help: str = ""


PRESETS: dict[str, Preset] = {
    "embedded": Preset("embedded", "EMMA · SmolLM2-135M", None, None, None, None, "auto", False,
                       max_input=512,
                       help="the embedded default: SmolLM2-135M-Instruct + shipped LoRA adapter, MiniLM encoders"),
    "emma-paper": Preset("emma-paper", "EMMA · FLAN-T5-Large (paper)", "google/flan-t5-large", "bert-base-uncased",
                         "bert-base-uncased", "cls", "none", True,
                         help="the paper's EMMA: FLAN-T5-Large + LoRA (QLoRA on CUDA), two bert-base-uncased "
                              "encoders with [CLS] vectors; needs those weights locally"),
}


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown EMMA preset {name!r}; choose one of {', '.join(PRESETS)}") from None


_PRETTY = {"smollm2-135m-instruct": "SmolLM2-135M", "flan-t5-large": "FLAN-T5-Large", "flan-t5-base": "FLAN-T5-Base",
           "flan-t5-small": "FLAN-T5-Small"}


def backbone_label(lm_name: str) -> str:
    base = Path(str(lm_name).rstrip("/")).name.lower()
    return _PRETTY.get(base, Path(str(lm_name).rstrip("/")).name or str(lm_name))


def system_label(lm_name: str, preset: str | None = None) -> str:
    """``"EMMA · <backbone>"``, with ``(paper)`` when the paper preset's backbone runs."""
    if preset and preset in PRESETS and PRESETS[preset].backbone and \
            backbone_label(PRESETS[preset].backbone) == backbone_label(lm_name):
        return PRESETS[preset].label
    return f"EMMA · {backbone_label(lm_name)}"
