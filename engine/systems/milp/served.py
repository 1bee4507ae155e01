"""MiLP's per-partner memories served by a generator server: LoRA per request, many partners on one base
model (docs/architecture.md, "Generator backends").

Training stays in this process (the partner's adapter is trained on the in-process copy of the backbone,
:class:`engine.systems.milp.model.AdapterBank`); generation goes to the server with the request's ``model``
= the served name of the adapters active for that partner — the instruction adapter (§2.3) and the
partner's memory, combined into one LoRA (their ΔW add up exactly). A served name is content-addressed
(``milp-<partner key>-<hash>``), so a memory updated at a session end is a new name and never a stale one.

How a name reaches the server: already served (e.g. ``memlab engine llama-cpp-serve`` started with the
GGUFs :meth:`ServedMemories.export_gguf` writes), else loaded at run time (vLLM ``/v1/load_lora_adapter``).
A server that can load neither (llama.cpp's Python server loads LoRAs only at start) leaves that partner's
generation in this process, with the reason in :attr:`ServedMemories.notes` — never a silent base-model reply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from pathlib import Path

from .model import CONFIG_FILE, WEIGHTS_FILE


class ServedMemories:
    def __init__(self, remote_lm, bank, base_config: str | Path | None = None):
        self.remote = remote_lm            # LoadedLM on the server (backend set)
        self.bank = bank                   # the in-process AdapterBank (training; the fallback's generator)
        self.base_config = base_config
        self.notes: list[str] = []
        self.fallback: dict[str, str] = {}  # served name -> why it runs in this process
        self._served: set[str] = set()
        self._names: dict = {}  # key -> served name (hashing the adapter files once, not at every reply)
        self._tmp = Path(tempfile.mkdtemp(prefix="memlab-milp-served-"))

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ------------------------------------------------------------------ which adapters, under which name
    def active_dirs(self, key: str | None) -> list[Path]:
        """Adapter directories active for ``key`` (instruction adapter first), written from the bank."""
        names = [n for n in (self.bank.instruct, key) if n and self.bank.has(n)]
        out = []
        for n in names:
            d = self._tmp / "adapters" / n
            if not (d / WEIGHTS_FILE).is_file():
                self.bank.save(n, d)
            out.append(d)
        return out

    def refresh(self, key: str) -> None:
        """Forget the written copy of ``key`` (its adapter was retrained)."""
        shutil.rmtree(self._tmp / "adapters" / key, ignore_errors=True)
        self._names.pop(key, None)

    def served_name(self, key: str | None) -> str | None:
        if key in self._names:
            return self._names[key]
        self._names[key] = name = self._hash_name(key)
        return name

    def _hash_name(self, key: str | None) -> str | None:
        dirs = self.active_dirs(key)
        if not dirs:
            return None
        h = hashlib.sha1()
        for d in dirs:
            h.update((d / CONFIG_FILE).read_bytes())
            h.update((d / WEIGHTS_FILE).read_bytes())
        return f"milp-{key or 'instruct'}-{h.hexdigest()[:10]}"

    # ------------------------------------------------------------------ exports for a server's start
    def export_gguf(self, key: str | None, directory: str | Path) -> tuple[str, Path] | None:
        """(served name, llama.cpp GGUF LoRA) of the adapters active for ``key``; None when none is."""
        from engine.backbones.gguf_lora import peft_lora_to_gguf

        name = self.served_name(key)
        if name is None:
            return None
        path = peft_lora_to_gguf(self.active_dirs(key), Path(directory) / f"{name}.gguf", base_config=self.base_config)
        return name, path

    def export_peft(self, key: str | None) -> Path:
        """One peft directory with the adapters active for ``key`` (what vLLM loads)."""
        from engine.backbones.gguf_lora import combined_peft_lora

        dirs = self.active_dirs(key)
        if len(dirs) == 1:
            return dirs[0]
        return combined_peft_lora(dirs, self._tmp / "combined" / (self.served_name(key) or "x"))

    # ------------------------------------------------------------------ per request
    def lm_for(self, key: str | None):
        """The server LoadedLM for ``key``'s adapters (the base model when none is active), or None when
        this partner's generation must run in this process (see the module docstring)."""
        from engine.backbones.server import ServerError

        name = self.served_name(key)
        if name is None:
            return self.remote
        if name in self.fallback:
            return None
        if name not in self._served:
            if name in self.remote.backend.models():
                self._served.add(name)
            else:
                try:
                    self.remote.backend.load_adapter(name, str(self.export_peft(key)))
                    self._served.add(name)
                    self.notes.append(f"adapter {name} loaded on {self.remote.backend.spec.url}")
                except (ServerError, ValueError, KeyError, OSError) as e:  # refused, or not convertible
                    why = (f"{name}: the generator server neither serves it nor loads adapters at run time ({e}); "
                           "this partner's replies are generated in this process")
                    self.fallback[name] = why
                    self.notes.append(why)
                    return None
        return dataclasses.replace(self.remote, adapter=name)
