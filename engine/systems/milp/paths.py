"""Where MiLP's shipped artefacts live (torch-free): ``assets/milp/theta.json`` (the configuration found by
the search, §2.2) and ``assets/milp/instruct-<backbone>/`` (the instruction-tuning adapter, §2.3)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .config import Theta

ASSETS = Path(__file__).resolve().parents[3] / "assets" / "milp"


def backbone_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", Path(str(name)).name.lower()).strip("-")


def shipped_theta(num_layers: int) -> tuple[Theta | None, str]:
    path = ASSETS / "theta.json"
    if not path.is_file():
        return None, ""
    data = json.loads(path.read_text(encoding="utf-8"))
    theta = Theta.from_dict(data)
    if len(theta.alpha) != num_layers:
        return None, f"{path} is for a {len(theta.alpha)}-layer backbone"
    return theta, f"search result {path.name} ({data.get('source', '')})"


def shipped_instruct_dir(backbone: str) -> Path | None:
    d = ASSETS / f"instruct-{backbone_slug(backbone)}"
    return d if (d / "adapter_config.json").is_file() else None
