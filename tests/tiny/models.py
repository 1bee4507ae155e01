"""Tiny randomly initialised transformers (2 layers, width 32) of the architectures MemLab runs: GPT-2 and
Llama-style causal LMs, T5, and a BERT encoder — real models through the same loading and generation code as
the full-size ones, in memory (a ``LoadedLM`` / ``LoadedEncoder``) or saved as a model directory with its
tokenizer (what ``load_lm`` / ``load_encoder`` and the engine worker read)."""

from __future__ import annotations

import functools
from pathlib import Path

from .tokenizers import tokenizer

ARCHS = ("gpt2", "llama", "t5")
KIND = {"gpt2": "causal", "llama": "causal", "t5": "seq2seq"}


def _lm_model(arch: str, tok, *, max_positions: int | None, init_range: float | None):
    from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, T5Config,
                              T5ForConditionalGeneration)

    vocab = len(tok)
    if arch == "llama":
        kw = {} if init_range is None else {"initializer_range": init_range}
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions or 512,
                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                          bos_token_id=tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id, **kw)
        return LlamaForCausalLM(cfg)
    if arch == "gpt2":
        kw = {} if init_range is None else {"initializer_range": init_range}
        cfg = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=max_positions or 1024,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, **kw)
        return GPT2LMHeadModel(cfg)
    if arch == "t5":
        cfg = T5Config(vocab_size=vocab, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2,
                       num_heads=4, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                       decoder_start_token_id=tok.pad_token_id)
        return T5ForConditionalGeneration(cfg)
    raise ValueError(f"no tiny LM for {arch!r} (have {', '.join(ARCHS)})")


def tiny_lm(arch: str = "llama", *, seed: int = 0, tokenizer_kind: str = "bpe", path: Path | None = None,
            max_positions: int | None = None, init_range: float | None = None):
    """A 2-layer random LM of ``arch`` ("gpt2", "llama", "t5").

    Without ``path``: a ``LoadedLM`` (CPU, float32).  With ``path``: the model and its tokenizer saved there
    (once; an existing directory is reused) and the path returned.  ``tokenizer_kind``: "bpe" (400 tokens,
    trained on the test texts) or "wordpiece" (MiniLM's real one)."""
    import torch

    if path is not None and (Path(path) / "config.json").is_file():
        return Path(path)
    torch.manual_seed(seed)
    tok = tokenizer("llama" if arch == "llama" else arch, tokenizer_kind)
    model = _lm_model(arch, tok, max_positions=max_positions, init_range=init_range)
    model.eval()
    if path is not None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path, safe_serialization=True)
        tok.save_pretrained(path)
        return path
    from engine.backbones.types import DevicePlan, LoadedLM

    return LoadedLM(model, tok, KIND[arch], f"tiny-random-{arch}", DevicePlan(reasons=["test: CPU float32"]))


def tiny_encoder(*, seed: int = 0, path: Path | None = None):
    """A 2-layer random BERT encoder with the BPE tokenizer: a ``LoadedEncoder`` (mean pooling) or, with
    ``path``, saved there and the path returned."""
    import torch
    from transformers import BertConfig, BertModel

    if path is not None and (Path(path) / "config.json").is_file():
        return Path(path)
    torch.manual_seed(seed)
    tok = tokenizer("bert", "bpe")
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    model = BertModel(cfg)
    model.eval()
    if path is not None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path)
        tok.save_pretrained(path)
        return path
    from engine.backbones.loading import load_encoder
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        tok.save_pretrained(d)
        return load_encoder(d, device="cpu")


@functools.lru_cache(maxsize=1)
def minilm():
    """The real all-MiniLM-L6-v2 encoder from the installed package (cached per test session)."""
    from engine.backbones.embedded import default_encoder_path
    from engine.backbones.loading import load_encoder

    return load_encoder(str(default_encoder_path()), device="cpu")
