"""Shared LoRA / QLoRA plumbing for every system that fine-tunes a backbone (EMMA, MiLP, ...).

EMMA paper, Appendix E.1: "We apply the QLoRA (Dettmers et al., 2023) strategy to fine-tune FLAN-T5-Large
... To configure QLoRA, we employ 32 for r, 32 for lora alpha, 0.1 for lora dropout, and 4-bit
quantization."  Those are the defaults of :class:`LoraSettings`.

MiLP (§2.1, Eq. 1: h = W_l x + B A x) puts LoRA on the feed-forward projections instead, per layer and
with per-layer ranks: :func:`attach_lora` takes ``targets="attention"|"ffn"|[names]``,
``layers_to_transform``, ``rank_pattern``/``alpha_pattern`` and an ``adapter_name``; a second call on a
model that already carries adapters adds another named adapter (peft's multi-adapter support), and
:func:`activate_adapters` switches between them or activates several at once (their outputs add up).

Device policy (docs/architecture.md): 4-bit NF4 through bitsandbytes only when CUDA is present (QLoRA); plain LoRA
over full-precision weights otherwise.  Every decision is written into ``reasons`` so the caller can show
it to the user — never a silent fallback.
"""

from __future__ import annotations

import re
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
# Full-name patterns (regular expressions matched at the end of a module's dotted name) for the attention
# and the feed-forward projections of each architecture family.  Patterns, not leaf names, because leaf
# names are ambiguous: GPT-2's ``c_proj`` is both the attention output and the MLP output, BERT's
# ``output.dense`` both the attention output and the FFN output.
_LLAMA = {"attention": r"\.self_attn\.(q_proj|k_proj|v_proj|o_proj)", "ffn": r"\.mlp\.(gate_proj|up_proj|down_proj)"}
_GPT2 = {"attention": r"\.attn\.(c_attn|c_proj)", "ffn": r"\.mlp\.(c_fc|c_proj)"}
_T5 = {"attention": r"\.(SelfAttention|EncDecAttention)\.(q|k|v|o)", "ffn": r"\.DenseReluDense\.(wi|wi_0|wi_1|wo)"}
_BERT = {"attention": r"\.attention\.(self\.(query|key|value)|output\.dense)",
         "ffn": r"\.layer\.\d+\.(intermediate\.dense|output\.dense)"}
PROJECTION_PATTERNS: dict[str, dict[str, str]] = {
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "gemma": _LLAMA,
    "gpt2": _GPT2,
    "t5": _T5, "mt5": _T5, "umt5": _T5,
    "bert": _BERT, "roberta": _BERT,
}
# the nn.ModuleList holding the layers, per family (peft's ``layers_pattern``)
LAYERS_PATTERN = {"gpt2": "h", "t5": "block", "mt5": "block", "umt5": "block", "bert": "layer", "roberta": "layer"}
_LAYER_INDEX = re.compile(r"\.(?:layers|h|block|layer)\.(\d+)\.")

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
    if kind == "encoder":
        return TaskType.FEATURE_EXTRACTION
    raise ValueError(f"unknown backbone kind {kind!r} (expected 'seq2seq', 'causal' or 'encoder')")


def lora_config(model, kind: str, settings: LoraSettings, *, target_modules: list[str] | None = None,
                layers_to_transform: list[int] | None = None, rank_pattern: dict | None = None,
                alpha_pattern: dict | None = None):
    """A peft ``LoraConfig`` with the paper's defaults and architecture-specific targets.

    The extra arguments are peft's own: exact ``target_modules``, ``layers_to_transform`` (+ the
    architecture's ``layers_pattern``), ``rank_pattern`` / ``alpha_pattern`` (module name -> r / alpha)."""
    from peft import LoraConfig

    targets = target_modules or settings.target_modules or target_modules_for(model)
    extra = {}
    if layers_to_transform is not None:
        extra["layers_to_transform"] = sorted(layers_to_transform)
        pattern = LAYERS_PATTERN.get(_model_type(model))
        if pattern:
            extra["layers_pattern"] = pattern
    if rank_pattern:
        extra["rank_pattern"] = dict(rank_pattern)
    if alpha_pattern:
        extra["alpha_pattern"] = dict(alpha_pattern)
    return LoraConfig(task_type=task_type_for(kind), r=settings.r, lora_alpha=settings.alpha,
                      lora_dropout=settings.dropout, target_modules=targets, bias="none", **extra)


def _model_type(model) -> str | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(getattr(base, "config", None), "model_type", None)


def layer_index(module_name: str) -> int | None:
    """The transformer layer a module belongs to (``model.layers.3.mlp.up_proj`` -> 3), or None."""
    m = _LAYER_INDEX.search(module_name + ".")
    return int(m.group(1)) if m else None


def num_layers(model) -> int:
    """How many transformer layers (per stack) ``model`` has: 1 + the largest layer index of a Linear."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    idx = [layer_index(n) for n, m in base.named_modules() if isinstance(m, torch.nn.Module)]
    idx = [i for i in idx if i is not None]
    if not idx:
        raise ValueError("no numbered transformer layers found in this model")
    return max(idx) + 1


def projection_modules(model, kind: str = "ffn", layers: list[int] | None = None) -> list[str]:
    """Full names of ``model``'s attention or feed-forward (``kind``) projection modules, optionally only
    in ``layers``; from :data:`PROJECTION_PATTERNS` for the model's architecture."""
    if kind not in ("attention", "ffn"):
        raise ValueError(f"projection kind must be 'attention' or 'ffn', got {kind!r}")
    model_type = _model_type(model)
    patterns = PROJECTION_PATTERNS.get(model_type)
    if patterns is None:
        raise ValueError(f"no {kind} projection table for model type {model_type!r} (known: "
                         f"{', '.join(sorted(PROJECTION_PATTERNS))}); pass target module names explicitly")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    rx = re.compile(patterns[kind] + "$")
    keep = set(layers) if layers is not None else None
    names = []
    for name, module in base.named_modules():
        if not rx.search(name) or not hasattr(module, "weight") or "lora_" in name:
            continue
        if keep is not None and layer_index(name) not in keep:
            continue
        names.append(name)
    if not names:
        raise ValueError(f"no {kind} projections of model type {model_type!r} in layers {layers}")
    return names


def attach_lora(model, kind: str, settings: LoraSettings, reasons: list[str] | None = None, *,
                adapter_name: str = "default", targets: str | list[str] | None = None,
                layers_to_transform: list[int] | None = None, rank_pattern: dict | None = None,
                alpha_pattern: dict | None = None):
    """Wrap ``model`` in a trainable peft LoRA model, or add another named adapter to a peft model.

    ``targets``: None (``settings.target_modules`` or the architecture's attention default, as before),
    ``"attention"`` / ``"ffn"`` (every attention / feed-forward projection of the architecture, MiLP Eq. 1),
    or a list of module names.  ``layers_to_transform``: only those layer indices.  ``rank_pattern`` /
    ``alpha_pattern``: per-module r / alpha (keys: module names or regular expressions, as in peft).
    A 4-bit model first goes through ``prepare_model_for_kbit_training`` (QLoRA recipe: fp32 norms,
    input grads, gradient checkpointing).  The new adapter is the active, trainable one.
    Appends what was done to ``reasons``.
    """
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    reasons = reasons if reasons is not None else []
    names = None
    if isinstance(targets, str):
        names = projection_modules(model, targets, layers_to_transform)
    elif targets is not None:
        names = list(targets)
        if not names:
            raise ValueError("targets is an empty list")
    config = lora_config(model, kind, settings, target_modules=names, layers_to_transform=layers_to_transform,
                         rank_pattern=rank_pattern, alpha_pattern=alpha_pattern)
    if isinstance(model, PeftModel):
        if adapter_name in model.peft_config:
            raise ValueError(f"the model already has an adapter named {adapter_name!r} "
                             f"(has: {', '.join(model.peft_config)})")
        model.add_adapter(adapter_name, config)
        model.set_adapter(adapter_name)
        peft_model = model
    else:
        if is_quantized(model):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
            reasons.append("prepared the 4-bit backbone for k-bit training (gradient checkpointing on)")
        peft_model = get_peft_model(model, config, adapter_name=adapter_name)
    trainable, total = count_parameters(peft_model)
    where = (f"{len(names)} {targets if isinstance(targets, str) else 'named'} modules" if names
             else f"{sorted(config.target_modules)}")
    layers = f" in layers {sorted(layers_to_transform)}" if layers_to_transform is not None else ""
    ranks = f", per-module ranks {sorted(set(rank_pattern.values()))}" if rank_pattern else ""
    reasons.append(f"LoRA {adapter_name!r} r={settings.r} alpha={settings.alpha} dropout={settings.dropout} on "
                   f"{where}{layers}{ranks}: {trainable:,} trainable of {total:,} parameters")
    return peft_model


def is_quantized(model) -> bool:
    """True when the backbone was loaded through a bitsandbytes quantiser (4- or 8-bit)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
                or getattr(model, "hf_quantizer", None) is not None)


def activate_adapters(model, names: str | list[str], *, trainable: bool = True) -> None:
    """Make ``names`` the active adapter(s) of a peft model.  Several active adapters add their outputs
    (h = W x + sum_i B_i A_i x); ``trainable`` leaves their weights requiring gradients."""
    names = [names] if isinstance(names, str) else list(names)
    missing = [n for n in names if n not in model.peft_config]
    if missing:
        raise ValueError(f"no adapter named {missing[0]!r} (has: {', '.join(model.peft_config)})")
    if len(names) == 1:
        model.set_adapter(names[0])
    else:
        model.base_model.set_adapter(names)
    if not trainable:
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.requires_grad_(False)


def combine_adapters(model, names: list[str], weights: list[float], new_name: str,
                     combination: str = "cat") -> None:
    """A new adapter ``new_name`` = the weighted combination of ``names`` (peft ``add_weighted_adapter``;
    ``cat`` concatenates the low-rank factors, so the result is exactly the weighted sum of the adapters)."""
    model.add_weighted_adapter(adapters=list(names), weights=list(weights), adapter_name=new_name,
                               combination_type=combination)


def load_adapter(model, adapter_dir, *, trainable: bool = False, adapter_name: str = "default"):
    """Load a standard peft adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``)
    onto ``model`` — the format of the published EMMA dialogue module.  On a model that already is a
    peft model the adapter is added under ``adapter_name`` (several named adapters)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model.load_adapter(str(adapter_dir), adapter_name=adapter_name, is_trainable=trainable)
        return model
    return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=adapter_name, is_trainable=trainable)


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
