"""Tokenizers for the tiny test models, built offline in well under a second.

``bpe``: a byte-level BPE tokenizer (400 tokens) trained on the test texts (:func:`tiny.episodes.texts`), with
the special tokens each architecture needs; ``wordpiece``: the real MiniLM WordPiece tokenizer shipped with the
embedded encoder (30k tokens).  Causal ones get a ChatML chat template (the chat-prompt path, as with SmolLM2),
except GPT-2, which has none (the plain-prompt path)."""

from __future__ import annotations

from .episodes import texts

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = {"t5": ["<pad>", "</s>", "<unk>"], "llama": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            "gpt2": ["<|endoftext|>"], "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]}


def bpe(arch: str):
    """A byte-level BPE fast tokenizer with the special tokens ``arch`` ("t5", "llama", "gpt2", "bert") needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if arch not in SPECIALS:
        raise ValueError(f"no tiny tokenizer for {arch!r} (have {', '.join(SPECIALS)})")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts(), trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS[arch],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if arch == "t5":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    if arch == "bert":
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                           special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    if arch == "gpt2":
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                       bos_token="<|endoftext|>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML
    return fast


def wordpiece(arch: str):
    """MiniLM's real WordPiece tokenizer, ``[SEP]`` as end of sequence; ChatML for llama."""
    from transformers import AutoTokenizer

    from engine.backbones.embedded import default_encoder_path

    tok = AutoTokenizer.from_pretrained(str(default_encoder_path()))
    tok.eos_token = "[SEP]"
    if arch == "llama":
        tok.chat_template = CHATML
    return tok


def tokenizer(arch: str, kind: str = "bpe"):
    if kind == "bpe":
        return bpe(arch)
    if kind == "wordpiece":
        return wordpiece(arch)
    raise ValueError(f"tokenizer kind must be 'bpe' or 'wordpiece', got {kind!r}")
