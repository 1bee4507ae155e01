"""A peft LoRA adapter as a llama.cpp GGUF LoRA, so that a llama.cpp server applies it per request.

vLLM serves peft adapter directories as they are (``--lora-modules NAME=DIR``); llama.cpp reads LoRAs in
its own GGUF adapter format. This writes that format with the ``gguf`` package, as llama.cpp's
``convert_lora_to_gguf.py`` does for Llama-architecture models (SmolLM2 is one):

* keys ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` (llama.cpp scales each
  ΔW = B·A by alpha / r, as peft does without rsLoRA);
* tensors ``blk.{i}.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight.lora_{a,b}``, float32;
* the rotary permutation that llama.cpp's converter applies to the query and key projections of Llama
  models (heads' halves interleaved) applied to ``lora_b`` of ``q_proj``/``k_proj`` — it acts on output
  rows, so ``permute(B)·A = permute(B·A)``.

Torch-free: numpy, safetensors and gguf.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_MODULES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down"}
_NAME = re.compile(r"(?:^|\.)layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$")


class UnsupportedAdapter(ValueError):
    """The adapter cannot be written as a llama.cpp LoRA (the message says what and where)."""


def permute_rows(b, n_head: int, n_head_kv: int | None = None):
    """llama.cpp's ``LlamaModel.permute`` on the output rows of a (out, r) matrix."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (b.reshape(n_head, 2, b.shape[0] // n_head // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape))


def peft_lora_to_gguf(adapter_dir: str | Path, out: str | Path, *, base_config: str | Path | None = None) -> Path:
    """Write the peft LoRA in ``adapter_dir`` as ``out`` (a GGUF LoRA); ``base_config`` is the base model's
    ``config.json`` (default: the one in the adapter's ``base_model_name_or_path``)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    adapter_dir, out = Path(adapter_dir), Path(out)
    cfg_path = adapter_dir / "adapter_config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise UnsupportedAdapter(f"{cfg_path}: cannot read the adapter config: {e}") from e
    for key in ("use_dora", "use_rslora"):
        if cfg.get(key):
            raise UnsupportedAdapter(f"{cfg_path}: {key} is set; llama.cpp LoRAs are plain LoRA")
    for key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(key):
            raise UnsupportedAdapter(f"{cfg_path}: a per-module {key} is not supported")
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise UnsupportedAdapter(f"{cfg_path}: peft_type {cfg.get('peft_type')!r} is not LORA")
    base_cfg_path = Path(base_config) if base_config else Path(str(cfg.get("base_model_name_or_path", ""))) / "config.json"
    try:
        base = json.loads(base_cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise UnsupportedAdapter(f"{base_cfg_path}: cannot read the base model's config: {e}") from e
    if base.get("model_type") not in ("llama",):
        raise UnsupportedAdapter(f"{base_cfg_path}: model_type {base.get('model_type')!r}; only Llama-architecture "
                                 "models (SmolLM2, Llama) are converted here")
    n_head = int(base["num_attention_heads"])
    n_kv = int(base.get("num_key_value_heads", n_head))
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise UnsupportedAdapter(f"{adapter_dir}: no adapter_model.safetensors")
    tensors = load_file(str(weights))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, value in tensors.items():
        m = _NAME.search(name)
        if not m:
            raise UnsupportedAdapter(f"{weights}: tensor {name!r} is not a LoRA A/B of a Llama projection")
        layer, module, ab = m.groups()
        pairs.setdefault(f"blk.{layer}.{_MODULES[module]}.weight", {})[ab] = value.astype(np.float32)
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(cfg.get("lora_alpha", cfg.get("r", 8))))
    for dest in sorted(pairs, key=lambda n: (int(n.split(".")[1]), n)):
        ab = pairs[dest]
        if set(ab) != {"A", "B"}:
            raise UnsupportedAdapter(f"{weights}: {dest} has lora_{'A' if 'A' in ab else 'B'} only")
        b = ab["B"]
        if ".attn_q." in dest:
            b = permute_rows(b, n_head, n_head)
        elif ".attn_k." in dest:
            b = permute_rows(b, n_head, n_kv)
        writer.add_tensor(dest + ".lora_a", np.ascontiguousarray(ab["A"]))
        writer.add_tensor(dest + ".lora_b", np.ascontiguousarray(b))
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
