"""The EMMA parts MemLab ships for the embedded default, found without torch, each with the reason it is used.

* the retriever (``assets/retrievers/emma-all-minilm-l6-v2/retriever.safetensors``): used only when its
  held-out figures (``retriever-report.json`` beside it) beat the untrained encoder on LoCoMo evidence
  recall@1 and @5 on conversations it never saw; otherwise the untrained MiniLM runs and the reason says so;
* the encoder link head (``assets/linkers/emma-all-minilm-l6-v2.safetensors``): the embedded preset's linker
  when its held-out precision at the stated recall beats the dialogue module's (see
  :mod:`engine.systems.emma.link_head`); the choice and both figures are in ``linkers/choice.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[3] / "assets"
RETRIEVER_DIR = ASSETS / "retrievers" / "emma-all-minilm-l6-v2"
RETRIEVER_FILE = RETRIEVER_DIR / "retriever.safetensors"
LINK_HEAD_FILE = ASSETS / "linkers" / "emma-all-minilm-l6-v2.safetensors"
LINKER_CHOICE = ASSETS / "linkers" / "choice.json"


def shipped_retriever() -> tuple[Path | None, str]:
    """(checkpoint, why) — ``None`` with the reason when the untrained encoder is the better choice."""
    if not RETRIEVER_FILE.is_file():
        return None, "no trained retriever shipped: the untrained all-MiniLM-L6-v2 encodes context and memories"
    report = RETRIEVER_DIR / "retriever-report.json"
    try:
        rep = json.loads(report.read_text())
    except (OSError, ValueError):
        return None, f"{report} missing or unreadable: the untrained all-MiniLM-L6-v2 runs"
    b, a = rep.get("before", {}), rep.get("after", {})
    fig = (f"LoCoMo evidence recall@1 {a.get('recall@1', 0):.3f} vs {b.get('recall@1', 0):.3f}, "
           f"@5 {a.get('recall@5', 0):.3f} vs {b.get('recall@5', 0):.3f} untrained, on unseen conversations")
    if not rep.get("beats_untrained"):
        return None, f"the trained retriever does not beat the untrained encoder ({fig}): untrained MiniLM runs"
    return RETRIEVER_FILE, f"EMMA retriever shipped with MemLab ({fig})"


def shipped_linker() -> tuple[str, Path | None, str]:
    """("dialogue" | "encoder-head", head file or None, why)."""
    try:
        choice = json.loads(LINKER_CHOICE.read_text())
    except (OSError, ValueError):
        return "dialogue", None, "the dialogue module links (paper §4.1); no link head shipped"
    if choice.get("linker") == "encoder-head" and LINK_HEAD_FILE.is_file():
        return "encoder-head", LINK_HEAD_FILE, str(choice.get("why", "encoder link head"))
    return "dialogue", None, str(choice.get("why", "the dialogue module links (paper §4.1)"))
