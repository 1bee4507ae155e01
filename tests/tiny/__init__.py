"""The one tiny-model helper for tests (docs/architecture.md, "Tests"): ``tiny_lm(arch)`` for "gpt2", "llama",
"t5" and ``tiny_encoder()`` (BERT), in memory or saved to a directory; ``minilm()``, the real embedded encoder;
``episodes(n)``, a small MiSC-shaped episode set."""

from .episodes import FACTS, episodes
from .models import ARCHS, minilm, tiny_encoder, tiny_lm
from .tokenizers import CHATML, tokenizer

__all__ = ["tiny_lm", "tiny_encoder", "minilm", "episodes", "FACTS", "ARCHS", "tokenizer", "CHATML"]
