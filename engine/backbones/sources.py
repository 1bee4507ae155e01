"""Where a model's files come from, decided before any loading starts (docs/architecture.md, "Models, offline first").

A name is either a local directory or a Hugging Face hub id. A hub id is looked up in the local cache first;
only when it is not cached, offline mode is off and a 1.5-second reachability test passes is the hub asked
at all — so a missing model fails at once with a message that says how to get it, never after a long hub retry.
Weights must be safetensors unless the caller opts in to pickle files (which can run code when loaded).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .types import ModelNotFoundError

SAFE_SUFFIXES = (".safetensors", ".safetensors.index.json")
PICKLE_SUFFIXES = (".bin", ".bin.index.json", ".pt", ".pth", ".ckpt", ".pkl")
REACHABILITY_TIMEOUT_S = 1.5


class PickleWeightsRefused(ModelNotFoundError):
    """A model or adapter has only pickle weights and the caller did not opt in (``allow_pickle``)."""


@dataclass(frozen=True)
class ModelSource:
    """What to hand to ``from_pretrained``: a directory (``local=True``) or a hub id to download."""

    name: str  # what the user asked for
    location: str  # directory path or hub id
    local: bool
    safetensors: bool  # False only when the caller allowed pickle weights and there are no safetensors
    origin: str  # "directory", "hub cache" or "hub"

    def describe(self) -> str:
        fmt = "safetensors" if self.safetensors else "pickle weights (allowed by the caller)"
        where = f"{self.origin} {self.location}"
        named = "" if os.path.abspath(os.path.expanduser(self.name)) == self.location else f"{self.name!r} from "
        return f"{named}{where} ({fmt})"


def offline_mode() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set to a true value."""
    return any(
        os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """One TCP connect to the hub endpoint, DNS included, bounded by ``timeout`` seconds in total."""
    url = urlparse(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def _weight_files(directory: Path) -> tuple[list[str], list[str]]:
    names = [p.name for p in directory.iterdir() if p.is_file()]
    safe = sorted(n for n in names if n.endswith(SAFE_SUFFIXES))
    pickle = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES) and not n.startswith("training_args"))
    return safe, pickle


def how_to_get(name: str) -> str:
    return (
        f"To get it: on a machine with internet run `hf download {name} --local-dir DIR` "
        f"(or `huggingface-cli download {name} --local-dir DIR`), copy DIR here and pass its path; "
        "or use the embedded default models (`memlab models prepare`)."
    )


def check_weights(directory: Path, name: str, *, allow_pickle: bool, what: str = "model") -> bool:
    """Return True for safetensors, False for allowed pickle weights; raise when neither may be loaded."""
    safe, pickle = _weight_files(directory)
    if safe:
        return True
    if pickle:
        if allow_pickle:
            return False
        raise PickleWeightsRefused(
            f"{what} {name!r} ({directory}) has only pickle weights ({', '.join(pickle)}). Pickle files can run "
            "arbitrary code when loaded, so they are refused by default. Convert them to safetensors, or opt in "
            "with allow_pickle=True (--allow-pickle) if you trust where they came from."
        )
    raise ModelNotFoundError(
        f"{what} {name!r}: the directory {directory} has no weight files (*.safetensors). {how_to_get(name)}"
    )


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
        or Path(name).expanduser().exists()
    )


def _cached_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, malformed id, or huggingface_hub missing
        return None


def resolve(name_or_path: str | os.PathLike, *, allow_pickle: bool = False, what: str = "model",
            hint: str | None = None) -> ModelSource:
    """Find ``name_or_path`` without waiting on the network; raise ModelNotFoundError naming it otherwise.

    ``hint`` replaces the generic how-to-get advice (e.g. "run `memlab models prepare`" for the default).
    """
    name = os.fspath(name_or_path)
    advice = hint or how_to_get(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"{what} {name!r}: {path} has no config.json, so it is not a model directory. {advice}")
        safe = check_weights(path, name, allow_pickle=allow_pickle, what=what)
        return ModelSource(name, str(path.resolve()), True, safe, "directory")
    if _looks_like_path(name):
        raise ModelNotFoundError(f"{what} {name!r}: no such directory ({path}). {advice}")

    snapshot = _cached_snapshot(name)
    if snapshot is not None and any(_weight_files(snapshot)):
        safe = check_weights(snapshot, name, allow_pickle=allow_pickle, what=what)
        return ModelSource(name, str(snapshot), True, safe, "hub cache")
    if offline_mode():
        raise ModelNotFoundError(
            f"{what} {name!r} is not a local directory and not in the Hugging Face cache, and offline mode is on "
            f"(HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE), so it cannot be downloaded. {advice}"
        )
    if not hub_reachable():
        raise ModelNotFoundError(
            f"{what} {name!r} is not a local directory and not in the Hugging Face cache, and the hub "
            f"({hub_endpoint()}) cannot be reached within {REACHABILITY_TIMEOUT_S:.1f} s. {advice}"
        )
    return ModelSource(name, name, False, not allow_pickle, "hub")
