"""Models for the EMMA benchmarks: the embedded SmolLM2-135M-Instruct when `memlab models prepare` has run,
else a small randomly initialised Llama-style causal model (MiniLM's tokenizer); always the real MiniLM
encoder. ``describe()`` says which one ran."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_models(device: str | None = "cpu"):
    """(LoadedLM, LoadedEncoder, description of the generator)."""
    from engine.backbones.embedded import check_prepared, default_encoder_path, default_lm_path
    from engine.backbones.loading import load_encoder, load_lm

    encoder = load_encoder(str(default_encoder_path()), device=device)
    ok, why = check_prepared()
    if ok:
        lm = load_lm(str(default_lm_path()), device=device)
        return lm, encoder, f"SmolLM2-135M-Instruct (embedded default) on {lm.plan.summary()}"
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from engine.backbones.types import DevicePlan, LoadedLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(default_encoder_path()))
    tok.eos_token = "[SEP]"
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model = LlamaForCausalLM(cfg).eval()
    lm = LoadedLM(model, tok, "causal", "random-llama-4x256", DevicePlan(reasons=["benchmark fallback"]))
    return lm, encoder, (f"random Llama-style causal model (4 layers, hidden 256, MiniLM vocab) on CPU float32 — "
                         f"SmolLM2 not prepared: {why}")


TOPICS = ["cat", "marathon", "exam", "garden", "violin", "Paris trip", "new job", "birthday party", "bakery",
          "hiking boots", "chess club", "wedding", "broken laptop", "piano lesson", "camping", "sushi dinner"]
NAMES = ["Alice", "Bob", "Carol", "Dave"]


def synthetic_memories(n: int) -> list[tuple[str, str, int]]:
    """n varied (about, text, session) memory sentences."""
    out = []
    for i in range(n):
        who = NAMES[i % len(NAMES)]
        topic = TOPICS[(i * 7) % len(TOPICS)]
        out.append((who, f"{who} talked about the {topic} plan number {i} and felt {['happy', 'worried', 'excited'][i % 3]}. "
                         f"(about {who}, from {['first', 'second', 'third'][i % 3]} session)", i % 3))
    return out
