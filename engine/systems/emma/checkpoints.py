"""Loading EMMA retriever checkpoints in the published layout (EMMA paper §4.2, App. E.2; docs/architecture.md,
"EMMA release conventions"): ONE safetensors file whose keys start with ``dialogue_encoder.`` (E_c, the context encoder) and
``memory_encoder.`` (E_m), each over a BERT-family encoder (the release: bert-base-uncased).

The same loader reads the files ``memlab train emma-retriever`` writes (engine.systems.emma.train_retriever; they add metadata naming the base
encoder and the pooling).  Keys are matched to the encoder with or without the architecture prefix
(``bert.embeddings...`` or ``embeddings...``); every shape is checked, and a mismatch is an error that names
the file, the key and both shapes.

The dialogue module's published format (a peft LoRA adapter directory over FLAN-T5) needs no code here:
``engine.backbones.loading.load_lm(backbone, adapter=DIR)`` loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

CHECKPOINT_NAME = "retriever.safetensors"  # the file name ``memlab train emma-retriever`` writes
FORMAT = "emma-retriever/1"  # metadata "format" of the files MemLab writes
PREFIXES = ("dialogue_encoder.", "memory_encoder.")
RELEASE_POOLING = "cls"  # §4.2; the release compares [CLS] vectors


class CheckpointError(ValueError):
    """A retriever checkpoint does not fit the encoder it is loaded over; the message says how."""


def read_metadata(path) -> dict:
    """The safetensors header metadata (``{}`` for files written without it, e.g. the EMMA release)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def from_base(path) -> list[str]:
    """The parts a compact checkpoint leaves to the base encoder (metadata ``from_base``, comma-separated
    prefixes such as ``dialogue_encoder.embeddings`` or ``memory_encoder``): MemLab's shipped retriever keeps
    only its trained layers, in fp16, so that it stays small."""
    return [p.strip() for p in read_metadata(path).get("from_base", "").split(",") if p.strip()]


def split_state(path) -> tuple[dict, dict]:
    """(dialogue_encoder state, memory_encoder state) with the prefixes removed; error if a tower is missing
    (unless the file's ``from_base`` metadata leaves that tower to the base encoder)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such retriever checkpoint")
    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    towers: tuple[dict, dict] = ({}, {})
    other = []
    for key, value in tensors.items():
        for i, prefix in enumerate(PREFIXES):
            if key.startswith(prefix):
                towers[i][key[len(prefix):]] = value
                break
        else:
            other.append(key)
    based = from_base(path)
    for prefix, tower in zip(PREFIXES, towers):
        if not tower and prefix.rstrip(".") not in based:
            sample = ", ".join(sorted(tensors)[:3]) or "none"
            raise CheckpointError(f"{path}: no keys start with {prefix!r} (found e.g. {sample}); an EMMA retriever "
                                  "checkpoint has dialogue_encoder.* and memory_encoder.* keys")
    return towers


def _fit_keys(state: dict, model) -> dict:
    """Map checkpoint keys onto ``model``'s: strip or add the architecture prefix (``bert.``) as needed."""
    own = model.state_dict()
    prefix = getattr(model, "base_model_prefix", "") + "."
    out = {}
    for key, value in state.items():
        if key in own:
            out[key] = value
        elif prefix != "." and key.startswith(prefix) and key[len(prefix):] in own:
            out[key[len(prefix):]] = value
        elif prefix != "." and prefix + key in own:
            out[prefix + key] = value
        else:
            out[key] = value  # reported as unexpected below
    return out


def load_tower(model, state: dict, path, tower: str, keep_from_base: tuple[str, ...] = ()) -> None:
    """Copy ``state`` into ``model`` after checking names and shapes (buffers such as ``position_ids`` and
    the pooler head may be absent from the file; weights may not, except those under ``keep_from_base``
    prefixes, which keep the base encoder's values).  fp16 tensors are cast to the model's dtype."""
    state = _fit_keys(state, model)
    if not state and "" in keep_from_base:
        return  # the whole tower is the base encoder
    own = model.state_dict()
    unexpected = sorted(k for k in state if k not in own and not k.startswith("pooler."))
    if unexpected:
        raise CheckpointError(f"{path}: {tower} has keys the encoder {type(model).__name__} does not have, "
                              f"e.g. {unexpected[:3]} — is the base encoder the right architecture?")
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{path}: {tower}.{key} has shape {tuple(value.shape)} but the base encoder "
                                  f"{type(model).__name__} expects {tuple(own[key].shape)}; load it over an "
                                  "encoder of matching size (the EMMA release uses bert-base-uncased)")
    missing = sorted(k for k in own if k not in state and not k.endswith("position_ids")
                     and not k.startswith("pooler.") and "token_type_ids" not in k
                     and not any(k.startswith(b) for b in keep_from_base if b))
    if missing:
        raise CheckpointError(f"{path}: {tower} lacks {len(missing)} weights of the encoder, e.g. {missing[:3]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items() if k in own}, strict=False)


def load_into(context_model, memory_model, path) -> None:
    """Load a checkpoint's two towers into two already-built encoder models (shapes validated)."""
    ctx_state, mem_state = split_state(path)
    based = from_base(path)

    def kept(tower):
        out = tuple(b[len(tower) + 1:] for b in based if b.startswith(tower + "."))
        return out + (("",) if tower in based else ())

    load_tower(context_model, ctx_state, path, "dialogue_encoder", kept("dialogue_encoder"))
    load_tower(memory_model, mem_state, path, "memory_encoder", kept("memory_encoder"))


def load_retriever_checkpoint(path, base: str | None = None, *, pooling: str | None = None,
                              device: str | None = None):
    """Load an EMMA retriever checkpoint → ``(context_encoder, memory_encoder)`` as two ``LoadedEncoder``.

    ``base``: the encoder architecture/tokenizer to load the weights over (hub id or directory); default:
    the ``base`` recorded in the file's metadata (files MemLab wrote), else an error asking for it.
    ``pooling``: default the file's metadata, else ``cls`` (the release's [CLS] vectors, §4.2).
    """
    from engine.backbones.loading import load_encoder

    meta = read_metadata(path)
    base = base or meta.get("base")
    if not base:
        raise CheckpointError(f"{path}: the file does not name its base encoder; pass it (e.g. bert-base-uncased "
                              "for the EMMA release)")
    pooling = pooling or meta.get("pooling") or RELEASE_POOLING
    ctx = load_encoder(base, pooling=pooling, device=device)
    mem = load_encoder(base, pooling=pooling, device=device)
    load_into(ctx.model, mem.model, path)
    note = f"retriever weights from {path} ({meta.get('format', 'EMMA release layout')}), {pooling} pooling"
    for enc, tower in ((ctx, "dialogue_encoder"), (mem, "memory_encoder")):
        enc.model.eval()
        enc.name = f"{path}#{tower}"
        enc.plan.reasons.append(note)
    return ctx, mem


def describe_retriever_checkpoint(path) -> dict:
    """What a checkpoint holds, for the model settings UI: towers, tensor counts, metadata."""
    ctx, mem = split_state(path)
    return {"path": str(path), "dialogue_encoder_tensors": len(ctx), "memory_encoder_tensors": len(mem),
            "metadata": read_metadata(path), "parameters": sum(v.numel() for v in ctx.values()) +
            sum(v.numel() for v in mem.values())}


def adapter_summary(adapter_dir) -> dict:
    """What a peft adapter directory declares (base model, LoRA rank/alpha/targets), read without torch."""
    cfg_path = Path(adapter_dir) / "adapter_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not a peft adapter directory (no adapter_config.json)")
    cfg = json.loads(cfg_path.read_text())
    return {k: cfg.get(k) for k in ("base_model_name_or_path", "peft_type", "task_type", "r", "lora_alpha",
                                    "lora_dropout", "target_modules")}
