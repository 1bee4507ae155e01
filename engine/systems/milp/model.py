"""MiLP's parameterised memory at inference time: LoRA on the feed-forward projections (§2.1, Eq. 1:
h = W_l x + B A x), one named peft adapter per chat partner, plus the instruction-tuning adapter (§2.3).

How the n LoRA modules of θ = (α, n, r) are realised — per-layer patterns, not n separate adapters.  n
parallel rank-r modules on one projection give h = W x + Σ_j B_j A_j x = W x + [B_1 … B_n][A_1; …; A_n] x,
i.e. exactly one LoRA module of rank n·r (the same function class and the same initialisation — A random,
B zero — hence the same training dynamics).  MiLP therefore attaches ONE peft adapter of rank n·r (and
lora_alpha = n·r: the scale of Eq. 1 is 1) on the FFN projections of the layers with α_l = 1 (peft
``layers_to_transform``) instead of n named adapters that would all be active at once.  Why: one matrix
product per projection instead of n (a 32-module θ would be 32× the adapter calls on a CPU), and a
partner's memory is one standard peft adapter directory.  Consequence, stated: n and r enter the model
only through n·r — in line with the paper's Table 4, where searching n or r alone "only achieves similar
personal information coverage ... more related to the scale of stored memory".  Named adapters are used
where they mean something: one per partner, and the shared instruction adapter.

The injection itself (training) is :func:`engine.systems.milp.train_memory.inject`; this module only loads,
switches and measures adapters, and never imports engine/training.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

MEMORY = "memory"          # the adapter name a search trial trains
INSTRUCT = "instruct"      # the instruction-tuning adapter (§2.3)
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def adapter_key(partner: str) -> str:
    """A peft adapter name for a partner (letters, digits, underscores; stable)."""
    slug = re.sub(r"\W+", "_", partner).strip("_").lower()[:24] or "partner"
    return f"p_{slug}_{hashlib.sha1(partner.encode()).hexdigest()[:6]}"


def pack_adapter(directory: Path) -> dict:
    """An adapter directory as JSON-able data (config text + fp16 safetensors, base64) for the chat state."""
    from safetensors.torch import load_file, save_file

    directory = Path(directory)
    tensors = {k: v.half().contiguous() for k, v in load_file(str(directory / WEIGHTS_FILE)).items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS_FILE
        save_file(tensors, str(path))
        blob = path.read_bytes()
    return {"config": (directory / CONFIG_FILE).read_text(encoding="utf-8"),
            "weights_b64": base64.b64encode(blob).decode("ascii"), "bytes": len(blob),
            "parameters": int(sum(t.numel() for t in tensors.values()))}


def unpack_adapter(packed: dict, directory: Path) -> Path:
    """Write a packed adapter back as a peft adapter directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        (directory / CONFIG_FILE).write_text(packed["config"], encoding="utf-8")
        (directory / WEIGHTS_FILE).write_bytes(base64.b64decode(packed["weights_b64"]))
        json.loads(packed["config"])
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"a stored MiLP adapter is damaged ({type(e).__name__}: {e})") from None
    return directory


def plain_copy(model):
    """A copy of ``model`` without any peft adapter layers (removed, not merged): for a shared generator that
    carries another system's adapter, or another MiLP agent's (peft injects its layers into the base)."""
    import copy

    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    m = copy.deepcopy(model)
    if isinstance(m, PeftModel):
        return m.unload()
    for module in list(m.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, BaseTunerLayer):
                setattr(module, name, child.get_base_layer())
    if "peft_config" in vars(m):
        del m.peft_config
    return m


class AdapterBank:
    """The base LM with named adapters: the instruction adapter (optional) and one memory per partner.

    Adapters are active only inside :meth:`active` (peft's adapter layers are disabled outside it), so the
    shared base model behaves as itself for every other system that uses it."""

    def __init__(self, lm, instruct_dir: str | Path | None = None):
        self.lm = lm
        self.base = lm.model
        self.peft = None
        self.names: set[str] = set()
        self.instruct = None
        self._tmp = Path(tempfile.mkdtemp(prefix="memlab-milp-"))
        if instruct_dir:
            self.load(INSTRUCT, instruct_dir)
            self.instruct = INSTRUCT

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _adopt(self, peft_model) -> None:
        self.peft = peft_model
        self.lm.model = peft_model
        self._disable()

    def load(self, name: str, directory) -> None:
        """Load a peft adapter directory under ``name`` (replacing one of that name)."""
        from peft import PeftModel

        directory = Path(directory)
        if not (directory / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{directory}: no {CONFIG_FILE} (not a peft adapter directory)")
        if self.peft is None:
            self._adopt(PeftModel.from_pretrained(self.base, str(directory), adapter_name=name))
        else:
            if name in self.peft.peft_config:
                self.peft.delete_adapter(name)
            self.peft.load_adapter(str(directory), adapter_name=name)
            self._disable()
        self.names.add(name)

    def load_packed(self, name: str, packed: dict) -> None:
        self.load(name, unpack_adapter(packed, self._tmp / name))

    def set_peft(self, peft_model, name: str) -> None:
        """Adopt a peft model a trainer wrapped the base in (its new adapter ``name``)."""
        self._adopt(peft_model)
        self.names.add(name)

    def has(self, name: str) -> bool:
        return name in self.names

    def _disable(self) -> None:
        if self.peft is not None:
            self.peft.base_model.disable_adapter_layers()

    @contextlib.contextmanager
    def active(self, *names: str | None):
        """Within the block: the given adapters (those that exist; the instruction adapter always) active
        together — their outputs add up — and nothing trainable; outside it, the base model."""
        wanted = [n for n in ((self.instruct,) + names) if n and n in self.names]
        if self.peft is None or not wanted:
            yield self.lm
            return
        self.peft.base_model.enable_adapter_layers()
        self.peft.base_model.set_adapter(wanted if len(wanted) > 1 else wanted[0])
        for n, p in self.peft.named_parameters():
            if "lora_" in n:
                p.requires_grad_(False)
        try:
            yield self.lm
        finally:
            self._disable()

    def save(self, name: str, directory) -> Path:
        """One adapter as a standard peft adapter directory."""
        directory = Path(directory)
        with tempfile.TemporaryDirectory() as tmp:
            self.peft.save_pretrained(tmp, selected_adapters=[name])
            src = Path(tmp) / name if (Path(tmp) / name).is_dir() else Path(tmp)
            directory.mkdir(parents=True, exist_ok=True)
            for f in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copy2(src / f, directory / f)
        return directory

    def pack(self, name: str) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            return pack_adapter(self.save(name, Path(tmp) / "a"))
