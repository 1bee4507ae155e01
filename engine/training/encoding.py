"""Prompt → answer encoding for supervised fine-tuning, shared by every trainer.

* seq2seq (FLAN-T5, EMMA App. E.1): the encoder reads the task sequence, the decoder is trained on the
  target with cross-entropy ("We train with a cross-entropy loss, a max input length of 1024, a maximum
  target length of 64").
* causal chat models: the prompt is rendered with the tokenizer's chat template (generation prompt added)
  and the answer is the assistant turn exactly as the template writes it (so it ends with the template's
  end-of-turn token); labels are -100 on the prompt, i.e. the loss is on the answer tokens only.

An encoded example is a dict ``{"input_ids": [...], "labels": [...]}`` (seq2seq: ``labels`` is the decoder
target; causal: ``labels`` has the same length as ``input_ids``).
"""

from __future__ import annotations

from typing import Sequence

IGNORE = -100


def encode_seq2seq(tokenizer, source: str, target: str, max_input: int, max_target: int) -> dict:
    """Encoder ids of ``source`` (right-truncated to ``max_input``) and decoder labels of ``target``."""
    ids = tokenizer(source, truncation=True, max_length=max_input)["input_ids"]
    labels = tokenizer(text_target=target, truncation=True, max_length=max_target)["input_ids"]
    return {"input_ids": list(ids), "labels": list(labels)}


def _render(tokenizer, messages: list[dict], **kw) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kw)


def chat_prompt_and_answer(tokenizer, messages: list[dict], target: str) -> tuple[str, str]:
    """The chat-template prompt (with the generation prompt) and the answer text as the template writes
    the assistant turn (``target`` + end-of-turn markup)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')} has no chat template; "
                         "causal training needs a chat model")
    prompt = _render(tokenizer, messages, add_generation_prompt=True)
    full = _render(tokenizer, list(messages) + [{"role": "assistant", "content": target}])
    if not full.startswith(prompt):
        # Templates that rewrite earlier turns: fall back to target + EOS after the prompt.
        return prompt, target + (tokenizer.eos_token or "")
    return prompt, full[len(prompt):]


def encode_chat(tokenizer, messages: list[dict], target: str, max_input: int, max_target: int) -> dict:
    """Prompt ids (left-truncated to ``max_input``: the newest text is kept) + answer ids (at most
    ``max_target``); labels mask the prompt with -100."""
    prompt, answer = chat_prompt_and_answer(tokenizer, messages, target)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"][-max_input:]
    a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"][:max_target]
    return {"input_ids": list(p_ids) + list(a_ids), "labels": [IGNORE] * len(p_ids) + list(a_ids)}


def prompt_length(tokenizer, kind: str, *, source: str | None = None, messages: list[dict] | None = None) -> int:
    """Token count of a prompt (used to drop the oldest history until an input fits)."""
    if kind == "seq2seq":
        return len(tokenizer(source)["input_ids"])
    return len(tokenizer(_render(tokenizer, messages, add_generation_prompt=True),
                         add_special_tokens=False)["input_ids"])


def pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return 0


def collate(examples: Sequence[dict], kind: str, pad: int) -> dict:
    """Right-pad a batch of encoded examples into tensors (labels padded with -100)."""
    import torch

    n = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), n), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
        mask[i, :len(e["input_ids"])] = 1
    m = max(len(e["labels"]) for e in examples) if kind == "seq2seq" else n
    labels = torch.full((len(examples), m), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        labels[i, :len(e["labels"])] = torch.tensor(e["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lm_loss(model, batch: dict):
    """Cross-entropy of the labels (transformers' built-in loss; -100 positions ignored)."""
    return model(**batch).loss


def answer_logprobs(model, batch: dict, kind: str):
    """Summed log-probability of each example's answer tokens (the non -100 labels), shape (batch,).

    Used to score fixed answers (e.g. the two link labels) without sampling."""
    import torch

    labels = batch["labels"]
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                labels=labels if kind == "seq2seq" else None)
    logits = out.logits.float()
    if kind == "causal":
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)
