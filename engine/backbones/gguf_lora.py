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


def _read_adapter(adapter_dir: Path):
    """(config, {dest tensor name: {"A", "B"}}) of one peft LoRA directory, validated."""
    import numpy as np
    from safetensors.numpy import load_file

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
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise UnsupportedAdapter(f"{adapter_dir}: no adapter_model.safetensors")
    pairs: dict[str, dict] = {}
    for name, value in load_file(str(weights)).items():
        m = _NAME.search(name)
        if not m:
            raise UnsupportedAdapter(f"{weights}: tensor {name!r} is not a LoRA A/B of a Llama projection")
        layer, module, ab = m.groups()
        pairs.setdefault(f"blk.{layer}.{_MODULES[module]}.weight", {})[ab] = value.astype(np.float32)
    for dest, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise UnsupportedAdapter(f"{weights}: {dest} has lora_{'A' if 'A' in ab else 'B'} only")
    return cfg, pairs


def _base_heads(base_config: Path) -> tuple[int, int]:
    try:
        base = json.loads(Path(base_config).read_text())
    except (OSError, ValueError) as e:
        raise UnsupportedAdapter(f"{base_config}: cannot read the base model's config: {e}") from e
    if base.get("model_type") not in ("llama",):
        raise UnsupportedAdapter(f"{base_config}: model_type {base.get('model_type')!r}; only Llama-architecture "
                                 "models (SmolLM2, Llama) are converted here")
    n_head = int(base["num_attention_heads"])
    return n_head, int(base.get("num_key_value_heads", n_head))


def peft_lora_to_gguf(adapter_dir, out: str | Path, *, base_config: str | Path | None = None) -> Path:
    """Write the peft LoRA in ``adapter_dir`` as ``out`` (a GGUF LoRA); ``base_config`` is the base model's
    ``config.json`` (default: the one in the adapter's ``base_model_name_or_path``).

    ``adapter_dir`` may be a list of adapter directories active *together* (their ΔW add up, e.g. MiLP's
    instruction adapter and a partner's memory): they become one LoRA — per projection their ranks are
    concatenated (A stacked, B side by side: B₁A₁ + B₂A₂ = [B₁ B₂][A₁; A₂]), each B multiplied by its own
    scale alpha/r and by the combined rank, with ``adapter.lora.alpha = 1`` (llama.cpp's scale alpha/rank
    then undoes the rank factor), so the sum is exact whatever the adapters' ranks and alphas."""
    import gguf
    import numpy as np

    dirs = [Path(d) for d in (adapter_dir if isinstance(adapter_dir, (list, tuple)) else [adapter_dir])]
    if not dirs:
        raise UnsupportedAdapter("no adapter directory given")
    out = Path(out)
    read = [_read_adapter(d) for d in dirs]
    first_cfg = read[0][0]
    base_cfg = Path(base_config) if base_config else Path(str(first_cfg.get("base_model_name_or_path", ""))) / "config.json"
    n_head, n_kv = _base_heads(base_cfg)
    merged: dict[str, tuple] = {}
    if len(read) == 1:
        cfg, pairs = read[0]
        alpha = float(cfg.get("lora_alpha", cfg.get("r", 8)))
        merged = {dest: (ab["A"], ab["B"]) for dest, ab in pairs.items()}
    else:
        alpha = 1.0
        parts: dict[str, list] = {}
        for cfg, pairs in read:
            scale = float(cfg.get("lora_alpha", cfg.get("r", 8))) / float(cfg.get("r", 8))
            for dest, ab in pairs.items():
                parts.setdefault(dest, []).append((ab["A"], ab["B"] * scale))
        for dest, items in parts.items():
            a = np.concatenate([x for x, _ in items], axis=0)
            b = np.concatenate([y for _, y in items], axis=1) * float(a.shape[0])
            merged[dest] = (a, b)
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for dest in sorted(merged, key=lambda n: (int(n.split(".")[1]), n)):
        a, b = merged[dest]
        if ".attn_q." in dest:
            b = permute_rows(b, n_head, n_head)
        elif ".attn_k." in dest:
            b = permute_rows(b, n_head, n_kv)
        writer.add_tensor(dest + ".lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(dest + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def combined_peft_lora(adapter_dirs, out: str | Path) -> Path:
    """Several peft LoRA directories active together written as ONE plain peft LoRA directory (what vLLM loads
    per request): per module the ranks are concatenated as in :func:`peft_lora_to_gguf`, each B multiplied
    by its adapter's alpha/r, zero-padded to one rank R for every module, ``lora_alpha = R`` (scale 1), so
    ΔW is exactly the sum. Torch-free."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    dirs = [Path(d) for d in adapter_dirs]
    out = Path(out)
    parts: dict[str, list] = {}
    targets: set[str] = set()
    first = None
    for d in dirs:
        cfg, _pairs = _read_adapter(d)  # validates
        first = first or cfg
        scale = float(cfg.get("lora_alpha", cfg.get("r", 8))) / float(cfg.get("r", 8))
        tensors = load_file(str(d / "adapter_model.safetensors"))
        for name, value in tensors.items():
            prefix, _, ab = name.rpartition(".lora_")
            targets.add(prefix.rsplit(".", 1)[-1])
            slot = parts.setdefault(prefix, [])
            if ab.startswith("A"):
                slot.append(["A", value.astype(np.float32)])
            else:
                slot.append(["B", value.astype(np.float32) * scale])
    rank = 0
    merged = {}
    for prefix, items in parts.items():
        a = np.concatenate([v for k, v in items if k == "A"], axis=0)
        b = np.concatenate([v for k, v in items if k == "B"], axis=1)
        merged[prefix] = (a, b)
        rank = max(rank, a.shape[0])
    tensors = {}
    for prefix, (a, b) in merged.items():
        pad = rank - a.shape[0]
        tensors[prefix + ".lora_A.weight"] = np.ascontiguousarray(np.pad(a, ((0, pad), (0, 0))))
        tensors[prefix + ".lora_B.weight"] = np.ascontiguousarray(np.pad(b, ((0, 0), (0, pad))))
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    cfg = {k: first.get(k) for k in ("base_model_name_or_path", "task_type", "bias", "fan_in_fan_out")
           if first.get(k) is not None}
    cfg.update(peft_type="LORA", r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=sorted(targets),
               inference_mode=True)
    (out / "adapter_config.json").write_text(json.dumps(cfg, indent=1))
    return out
