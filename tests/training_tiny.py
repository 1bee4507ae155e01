"""Tiny randomly initialised models (T5, Llama-style, BERT) saved as real model directories, and a small
MiSC-shaped synthetic episode set, for the training tests.  Everything is built offline in well under a
second: a byte-level BPE tokenizer trained on the test texts, and configs a few thousand parameters big."""

from __future__ import annotations

from pathlib import Path

from engine.data.model import Episode, Link, Memory, Session, Speaker, Turn

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

FACTS = [
    ("Bob", "Bob adopted a grey cat named Tom.", "I adopted a grey cat named Tom last week."),
    ("Bob", "Bob is training for a marathon in May.", "I am training for the marathon in May."),
    ("Alice", "Alice moved to a flat near the river.", "I moved to a flat near the river."),
    ("Carol", "Carol started learning the violin.", "I started learning the violin this spring."),
    ("Alice", "Alice is writing a book about birds.", "I am writing a book about birds."),
    ("Carol", "Carol broke her arm skiing.", "I broke my arm skiing in the mountains."),
]


def episodes(n: int = 4) -> list[Episode]:
    """``n`` two-session episodes: memories formed in session 0, tagged on main-speaker turns of session 1,
    with a link between the two memories about each partner."""
    out = []
    for e in range(n):
        main, bob, carol = Speaker("Alice", "teacher"), Speaker("Bob", "doctor"), Speaker("Carol", "painter")
        mems, turns0 = [], []
        for i, (about, mem, said) in enumerate(FACTS):
            if about == "Carol":
                continue
            speaker = "Alice" if about == "Alice" else "Bob"
            turns0.append(Turn(f"e{e}s0t{len(turns0)}", speaker, said))
            mems.append(Memory(f"e{e}m{i}", "Alice", about, mem if e % 2 == 0 else mem.replace(".", " again."), 0,
                               [turns0[-1].id]))
        turns0.insert(0, Turn(f"e{e}s0tx", "Bob", "Hello Alice, how are you?"))
        turns1 = [Turn(f"e{e}s1t0", "Carol", "Hi Alice, long time no see!"),
                  Turn(f"e{e}s1t1", "Alice", "Hi Carol! Bob told me he adopted a cat.", [mems[0].id]),
                  Turn(f"e{e}s1t2", "Carol", "Really? I broke my arm skiing."),
                  Turn(f"e{e}s1t3", "Alice", "Oh no. Bob is running a marathon in May, maybe he can help.",
                       [mems[1].id])]
        cmem = Memory(f"e{e}m9", "Alice", "Carol", "Carol broke her arm skiing.", 1, [turns1[2].id])
        links = [Link(mems[1].id, mems[0].id), Link(cmem.id, mems[1].id)]
        out.append(Episode(f"ep{e}", main, [bob, carol],
                           [Session(0, bob, "coffee", turns0), Session(1, carol, "park", turns1)],
                           mems + [cmem], links, source="test"))
    return out


def _texts() -> list[str]:
    words = []
    for ep in episodes(2):
        words += [t.text for _, t in ep.turns()] + [m.text for m in ep.memories]
    return words + ["generation: summarize memory sentence1: sentence2: positive negative [MEMORY] [LINK] "
                    "[NOW] [SEP] [NONE] first second third session about from Alice Bob Carol teacher doctor "
                    "painter You are talking with Reply Related? Memory Conversation: Memories (continue)"] * 3


def tokenizer(kind: str):
    """A byte-level BPE fast tokenizer with the special tokens ``kind`` ("t5", "llama", "bert") needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = {"t5": ["<pad>", "</s>", "<unk>"], "llama": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]}[kind]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_texts(), trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if kind == "t5":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                           special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML
    return fast


def t5_dir(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    tok = tokenizer("t5")
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=4, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                   decoder_start_token_id=tok.pad_token_id)
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def llama_dir(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = tokenizer("llama")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                      initializer_range=0.3)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def bert_dir(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = tokenizer("bert")
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path
