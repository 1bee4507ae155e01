"""A tiny randomly initialised causal LM saved as a model directory, for GUI tests that drive the
real engine worker (it loads models by path, as the app does with the embedded default)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def save_tiny_causal(directory: Path) -> Path:
    """Write (once) a 2-layer random Llama with MiniLM's tokenizer and a ChatML template."""
    from tiny import tiny_lm

    return tiny_lm("llama", tokenizer_kind="wordpiece", path=directory)


def engine_env(tmp_root: Path) -> dict:
    from engine.backbones.embedded import default_encoder_path

    lm_dir = save_tiny_causal(tmp_root / "tiny-causal")
    return {"MEMLAB_LM": str(lm_dir), "MEMLAB_ENCODER": str(default_encoder_path())}


@contextlib.contextmanager
def environment(env: dict):
    """``os.environ`` updated with ``env`` inside the block, restored after it."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
