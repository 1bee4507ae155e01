"""Shared LoRA / QLoRA plumbing for every system that fine-tunes a backbone (EMMA, MiLP, ...).

EMMA paper, Appendix E.1: "We apply the QLoRA (Dettmers et al., 2023) strategy to fine-tune FLAN-T5-Large
... To configure QLoRA, we employ 32 for r, 32 for lora alpha, 0.1 for lora dropout, and 4-bit
quantization."  Those are the defaults of :class:`LoraSettings`.

Device policy (DESIGN.md): 4-bit NF4 through bitsandbytes only when CUDA is present (QLoRA); plain LoRA
over full-precision weights otherwise.  Every decision is written into ``reasons`` so the caller can show
it to the user — never a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

# Attention projections LoRA attaches to, per architecture (``config.model_type``).  The EMMA release
# adapts T5's query/value projections; for Llama-style decoders (SmolLM2, Llama, Mistral, Qwen) the
# equivalent modules are q_proj/v_proj; GPT-2 fuses q/k/v in c_attn; BERT names them query/value.
TARGET_MODULES: dict[str, list[str]] = {
    "t5": ["q", "v"],
    "mt5": ["q", "v"],
    "umt5": ["q", "v"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"],
    "bert": ["query", "value"],
}
# Leaf-module names tried, in order, for an architecture not in the table.
_FALLBACK_CANDIDATES = (["q_proj", "v_proj"], ["q", "v"], ["query", "value"], ["c_attn"], ["qkv_proj"])


@dataclass
class LoraSettings:
    """LoRA hyper-parameters; defaults are the paper's (Appendix E.1: r=32, alpha=32, dropout 0.1).

    ``target_modules`` ``None`` means "chosen per architecture" (:func:`target_modules_for`).
    ``quantize`` is ``"auto"`` (4-bit NF4 when CUDA is present), ``"4bit"`` (required; error without
    CUDA) or ``"none"``.
    """

    r: int = 32
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] | None = None
    quantize: str = "auto"

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if self.quantize not in ("auto", "4bit", "none"):
            raise ValueError(f"quantize must be auto, 4bit or none, got {self.quantize!r}")


def wants_4bit(settings: LoraSettings, *, cuda: bool | None = None) -> bool:
    """Whether to ask the backbone loader for 4-bit NF4 weights (QLoRA, EMMA App. E.1).

    ``auto``: only when CUDA is present (bitsandbytes 4-bit needs it; the loader's ``DevicePlan``
    states the choice and any fallback).  ``4bit`` without CUDA is an error rather than a silent
    switch to plain LoRA.  The 4-bit config itself is ``engine.backbones.device.bnb_config``.
    """
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    if settings.quantize == "none":
        return False
    if settings.quantize == "4bit" and not cuda:
        raise RuntimeError("4-bit QLoRA needs a CUDA GPU (bitsandbytes); none is present. "
                           "Use --quantize auto or none to train plain LoRA on the CPU.")
    return cuda


def method_reason(model, settings: LoraSettings) -> str:
    """One sentence saying whether this run is QLoRA or plain LoRA, and why."""
    if is_quantized(model):
        return "QLoRA: LoRA over a 4-bit NF4 backbone (bitsandbytes), as in EMMA App. E.1"
    if settings.quantize == "none":
        return "plain LoRA over full-precision weights: quantisation turned off (--quantize none)"
    return ("plain LoRA over full-precision weights: no CUDA GPU here, and bitsandbytes 4-bit "
            "(QLoRA) needs one")


def target_modules_for(model) -> list[str]:
    """LoRA target modules for ``model``'s architecture (T5: q,v; Llama-style: q_proj,v_proj; ...)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in TARGET_MODULES:
        return list(TARGET_MODULES[model_type])
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for candidate in _FALLBACK_CANDIDATES:
        if all(c in leaves for c in candidate):
            return list(candidate)
    raise ValueError(f"no known attention projections to put LoRA on for model type {model_type!r}; "
                     "pass target modules explicitly (--lora-targets)")


def task_type_for(kind: str):
    from peft import TaskType

    if kind == "seq2seq":
        return TaskType.SEQ_2_SEQ_LM
    if kind == "causal":
        return TaskType.CAUSAL_LM
    raise ValueError(f"unknown backbone kind {kind!r} (expected 'seq2seq' or 'causal')")


def lora_config(model, kind: str, settings: LoraSettings):
    """A peft ``LoraConfig`` with the paper's defaults and architecture-specific targets."""
    from peft import LoraConfig

    targets = settings.target_modules or target_modules_for(model)
    return LoraConfig(task_type=task_type_for(kind), r=settings.r, lora_alpha=settings.alpha,
                      lora_dropout=settings.dropout, target_modules=targets, bias="none")


def is_quantized(model) -> bool:
    """True when the backbone was loaded through a bitsandbytes quantiser (4- or 8-bit)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
                or getattr(model, "hf_quantizer", None) is not None)


def attach_lora(model, kind: str, settings: LoraSettings, reasons: list[str] | None = None):
    """Wrap ``model`` in a trainable peft LoRA model.

    A 4-bit model first goes through ``prepare_model_for_kbit_training`` (QLoRA recipe: fp32 norms,
    input grads, gradient checkpointing).  Appends what was done to ``reasons``.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    reasons = reasons if reasons is not None else []
    if is_quantized(model):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        reasons.append("prepared the 4-bit backbone for k-bit training (gradient checkpointing on)")
    config = lora_config(model, kind, settings)
    peft_model = get_peft_model(model, config)
    trainable, total = count_parameters(peft_model)
    reasons.append(f"LoRA r={settings.r} alpha={settings.alpha} dropout={settings.dropout} on "
                   f"{sorted(config.target_modules)}: {trainable:,} trainable of {total:,} parameters")
    return peft_model


def load_adapter(model, adapter_dir, *, trainable: bool = False):
    """Load a standard peft adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``)
    onto ``model`` — the format of the published EMMA dialogue module."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
