"""Shared generation code for every system (EMMA and the baselines): one code path for causal and
seq2seq backbones.

* :func:`render_prompt` — a seq2seq model gets the paper's prefixed sequence (EMMA Appendix E.1);
  a causal model gets the instruction messages in its chat template (Appendix H).
* :func:`stream_generate` — streams decoded text pieces as tokens are generated; a
  ``threading.Event`` cancels at the next token (:class:`engine.agent.Cancelled` is raised).
* :func:`score_labels` — log-probability of each candidate answer (e.g. ``positive`` /
  ``negative``, EMMA §4.1 "Memory Linker") for a batch of prompts in one forward pass per batch:
  classification by scoring the label words instead of sampling a generation; on causal models
  the prompts' shared prefix is run once and its keys/values reused (:mod:`prefix_cache`).
* :func:`fit_to_window` — drop the oldest turns until a prompt fits the context window.
* :func:`complete_many` — one continuation per prompt (concurrent requests on a generator server).

Every function runs in this process on ``lm.model`` — the in-process generator backend — unless
``lm.backend`` is set (a generator server, :mod:`engine.backbones.server`): then the same rendered prompt
text goes to that backend (docs/architecture.md, "Generator backends").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from engine.agent import Cancelled
from engine.backbones.types import LoadedLM

DEFAULT_WINDOW = 1024  # EMMA Appendix E.1: max input length 1024 for the T5 dialogue module


@dataclass
class GenerationSettings:
    """Decoding settings (sampling by default, as in a live chat)."""

    max_new_tokens: int = 48
    min_new_tokens: int = 0
    do_sample: bool = True
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    def generate_kwargs(self, tokenizer) -> dict:
        kw = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                  repetition_penalty=self.repetition_penalty)
        if self.min_new_tokens:
            kw["min_new_tokens"] = self.min_new_tokens
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is not None:
            kw["pad_token_id"] = pad
        kw.update(self.extra)
        return kw


def context_window(lm: LoadedLM) -> int:
    """Usable input length in tokens: the model's position limit (and the tokenizer's); a seq2seq
    model without absolute positions (T5) gets the paper's 1024 (Appendix E.1)."""
    cfg = lm.config if lm.model is None else getattr(lm.model, "config", None)
    limits = []
    for attr in ("max_position_embeddings", "n_positions"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            limits.append(v)
    if lm.kind == "seq2seq" and not limits:
        return DEFAULT_WINDOW
    tmax = getattr(lm.tokenizer, "model_max_length", None)
    if isinstance(tmax, int) and 0 < tmax < 1_000_000:
        limits.append(tmax)
    served = getattr(lm.backend, "context", None) if lm.backend is not None else None
    if isinstance(served, int) and served > 0:  # a server may serve a shorter context than the model's
        limits.append(served)
    return min(limits) if limits else DEFAULT_WINDOW


def render_chat(lm: LoadedLM, messages: list[dict], answer: str | None = None) -> str:
    """Messages in the model's chat template, ready for the assistant's answer (or with it).

    A tokenizer without a chat template gets a plain ``System:/User:/Assistant:`` layout.
    """
    tok = lm.tokenizer
    if lm.has_chat_template:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        names = {"system": "System", "user": "User", "assistant": "Assistant"}
        text = "".join(f"{names.get(m['role'], m['role'])}: {m['content']}\n" for m in messages)
        text += "Assistant:"
    return text + (answer if answer is not None else "")


def render_prompt(lm: LoadedLM, seq2seq_text: str, messages: list[dict]) -> str:
    """The prompt string for ``lm``: the paper's sequence for seq2seq, the chat prompt for causal."""
    if lm.kind == "seq2seq":
        return seq2seq_text
    if lm.kind == "causal":
        return render_chat(lm, messages)
    raise ValueError(f"LoadedLM.kind must be 'causal' or 'seq2seq', got {lm.kind!r}")


def _add_special(lm: LoadedLM) -> bool:
    # a chat template already contains the special tokens it needs
    return not (lm.kind == "causal" and lm.has_chat_template)


def count_tokens(lm: LoadedLM, text: str) -> int:
    return len(lm.tokenizer(text, add_special_tokens=_add_special(lm))["input_ids"])


def fit_to_window(lm: LoadedLM, build: Callable[[list], str], items: list, reserve: int = 0) -> tuple[str, int]:
    """Build a prompt from the newest items that fit ``context_window(lm) - reserve`` tokens.

    ``build(items)`` renders a prompt; the oldest items are dropped first (at least the newest one
    is always kept). Returns the prompt and how many items were dropped.
    """
    budget = max(16, context_window(lm) - reserve)
    lo, hi = 0, max(0, len(items) - 1)
    if count_tokens(lm, build(items)) <= budget:
        return build(items), 0
    # binary search for the smallest number of dropped items that fits
    while lo < hi:
        mid = (lo + hi) // 2
        if count_tokens(lm, build(items[mid:])) <= budget:
            hi = mid
        else:
            lo = mid + 1
    return build(items[lo:]), lo


def _tokenize(lm: LoadedLM, texts: list[str], max_length: int | None = None):
    tok = lm.tokenizer
    old_side = getattr(tok, "padding_side", "right")
    old_trunc = getattr(tok, "truncation_side", "right")
    if lm.kind == "causal":
        tok.padding_side = "left"
    tok.truncation_side = "left"  # keep the newest context
    try:
        enc = tok(texts, return_tensors="pt", padding=True, truncation=max_length is not None,
                  max_length=max_length, add_special_tokens=_add_special(lm))
    finally:
        tok.padding_side, tok.truncation_side = old_side, old_trunc
    return {k: v.to(lm.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def _ensure_pad(tok) -> None:
    if tok.pad_token_id is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token


def stream_generate(lm: LoadedLM, prompt: str, settings: GenerationSettings | None = None,
                    cancel: threading.Event | None = None) -> Iterator[str]:
    """Yield decoded text pieces as ``lm`` generates a continuation of ``prompt``.

    ``model.generate`` runs in a worker thread feeding a ``TextIteratorStreamer``; a stopping
    criterion checks ``cancel`` (and whether the consumer went away) before every token. When
    ``cancel`` is set, :class:`Cancelled` is raised after the pieces produced so far. Errors in the
    worker (e.g. out of memory) are re-raised here.
    """
    settings = settings or GenerationSettings()
    if lm.backend is not None:  # a generator server (engine.backbones.server): same prompt text, streamed
        yield from lm.backend.stream(prompt, settings, cancel, adapter=lm.adapter)
        return
    _ensure_pad(lm.tokenizer)
    inputs = _tokenize(lm, [prompt], max_length=max(16, context_window(lm) - settings.max_new_tokens)
                       if lm.kind == "causal" else context_window(lm))
    yield from stream_from_inputs(lm, inputs, settings, cancel)


def stream_from_inputs(lm: LoadedLM, inputs: dict, settings: GenerationSettings | None = None,
                       cancel: threading.Event | None = None) -> Iterator[str]:
    """:func:`stream_generate` for ready ``model.generate`` inputs (``input_ids`` or ``inputs_embeds``, with
    ``attention_mask``), e.g. MDR's response feature as soft prefix embeddings (paper 000 Eq. 14)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    settings = settings or GenerationSettings()
    if lm.backend is not None:
        from engine.agent import Unsupported

        raise Unsupported(f"{lm.backend.where}: decoding from input embeddings (a soft prefix) runs in process "
                          "only; load the generator in this process for this system")
    tok = lm.tokenizer
    _ensure_pad(tok)
    stop = threading.Event()
    cancel = cancel or threading.Event()

    class _StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            flag = stop.is_set() or cancel.is_set()
            return torch.full((input_ids.shape[0],), flag, dtype=torch.bool, device=input_ids.device)

    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    errors: list[BaseException] = []

    def work():
        try:
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            with torch.inference_mode():
                lm.model.generate(**inputs, streamer=streamer,
                                  stopping_criteria=StoppingCriteriaList([_StopOnEvent()]),
                                  **settings.generate_kwargs(tok))
        except BaseException as e:  # surfaced to the caller below
            errors.append(e)
            streamer.end()

    worker = threading.Thread(target=work, name="memlab-generate", daemon=True)
    worker.start()
    try:
        for piece in streamer:
            if cancel.is_set():
                break
            if piece:
                yield piece
    finally:
        stop.set()
        worker.join()
    if errors:
        raise errors[0]
    if cancel.is_set():
        raise Cancelled("generation cancelled")


def generate_text(lm: LoadedLM, prompt: str, settings: GenerationSettings | None = None,
                  cancel: threading.Event | None = None) -> str:
    """The whole continuation as one string (same path as :func:`stream_generate`)."""
    return "".join(stream_generate(lm, prompt, settings, cancel)).strip()


def sample_texts(lm: LoadedLM, prompt: str, n: int, settings: GenerationSettings | None = None,
                 cancel: threading.Event | None = None) -> list[str]:
    """``n`` sampled continuations of ``prompt`` in one ``generate`` call (``num_return_sequences``); sampling
    is switched on whatever ``settings`` says.  Raises :class:`Cancelled` when ``cancel`` is set."""
    import dataclasses

    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    if n < 1:
        return []
    settings = dataclasses.replace(settings or GenerationSettings(), do_sample=True)
    if lm.backend is not None:
        return lm.backend.sample(prompt, n, settings, cancel, adapter=lm.adapter)
    tok = lm.tokenizer
    _ensure_pad(tok)
    inputs = _tokenize(lm, [prompt], max_length=max(16, context_window(lm) - settings.max_new_tokens)
                       if lm.kind == "causal" else context_window(lm))
    cancel = cancel or threading.Event()

    class _StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    with torch.inference_mode():
        out = lm.model.generate(**inputs, num_return_sequences=n,
                                stopping_criteria=StoppingCriteriaList([_StopOnEvent()]),
                                **settings.generate_kwargs(tok))
    if cancel.is_set():
        raise Cancelled("sampling cancelled")
    if lm.kind == "causal":
        out = out[:, inputs["input_ids"].shape[1]:]
    return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]


def complete_many(lm: LoadedLM, prompts: list[str], settings: GenerationSettings | None = None,
                  cancel: threading.Event | None = None, progress: Callable[[int, int, int], None] | None = None
                  ) -> list[str]:
    """One whole continuation per prompt, in order; ``progress(done, total, in_flight)``. On a generator
    server the prompts go as concurrent requests (up to its ``max_in_flight``, the server batches them); in
    this process one after another on the same path as :func:`generate_text`."""
    settings = settings or GenerationSettings()
    if lm.backend is not None:
        return lm.backend.complete_many(list(prompts), settings, cancel, adapter=lm.adapter, progress=progress)
    out = []
    for i, p in enumerate(prompts):
        out.append(generate_text(lm, p, settings, cancel))
        if progress:
            progress(i + 1, len(prompts), 0)
    return out


def describe_lm(lm: LoadedLM) -> dict:
    """Which generator a responder runs on, on which device (or server), and why (for the UI and reports)."""
    d = {"lm": lm.name, "lm_kind": lm.kind, "lm_device": lm.plan.summary(), "lm_reasons": list(lm.plan.reasons)}
    if lm.backend is not None:
        d["lm_device"] = lm.backend.where
        d["lm_backend"] = lm.backend.describe()
    return d


class LMResponder:
    """The generation half of a :class:`~engine.systems.session_agent.Responder` shared by every system that
    streams replies from one :class:`LoadedLM` with :class:`GenerationSettings`: streaming, n sampled replies
    (S-Dist) and the device description. A system adds only its ``reply_prompt``."""

    def __init__(self, lm: LoadedLM, settings: GenerationSettings | None = None):
        self.lm = lm
        self.settings = settings or GenerationSettings()

    def stream_reply(self, prompt: str, cancel: threading.Event | None = None) -> Iterator[str]:
        return stream_generate(self.lm, prompt, self.settings, cancel)

    def sample_replies(self, prompt: str, n: int, cancel: threading.Event | None = None) -> list[str]:
        return sample_texts(self.lm, prompt, n, self.settings, cancel)

    def describe(self) -> dict:
        return describe_lm(self.lm)


def _label_ids(lm: LoadedLM, label: str) -> list[int]:
    tok = lm.tokenizer
    if lm.kind == "seq2seq":
        return tok(text_target=label)["input_ids"]
    return tok(label, add_special_tokens=False)["input_ids"]


MIN_SHARED_PREFIX = 16  # shorter shared prefixes are not worth a cached forward pass
MIN_BATCH_EXTENSION = 8  # a batch's longer shared prefix (e.g. the same newer memory) is run once if this long


def score_labels(lm: LoadedLM, prompts: list[str], labels: tuple[str, ...] | list[str],
                 batch_size: int = 32, *, share_prefix: bool = True, stats: dict | None = None) -> np.ndarray:
    """Log-probability of each label as the answer to each prompt: array ``(len(prompts), len(labels))``.

    Used by EMMA's memory linker (§4.1) to decide ``positive``/``negative`` without sampling: one
    forward pass per batch of ``batch_size`` prompts, log-probs summed over each label's tokens
    (one row per prompt when every label is a single token, else one row per prompt and label).

    Causal models with ``share_prefix``: the longest token prefix common to all prompts (chat
    template + instruction, the same for every link prompt) is run once and its keys/values are
    cached per (model, prefix) across calls (:mod:`engine.systems.prefix_cache`); a batch whose
    prompts share a longer prefix (e.g. the same newer memory) extends it once; then only the
    suffixes run, on top of the prefix expanded to the batch. The result equals the uncached path.
    Seq2seq models, short prefixes (< ``MIN_SHARED_PREFIX`` tokens), prompts beyond the context
    window, a model in training mode or an unsupported cache type use the uncached path; ``stats``
    (if given) receives ``prefix_tokens``, ``prefix_cached``, ``batches`` and ``fallback`` (why not).
    """
    import torch

    tok = lm.tokenizer
    _ensure_pad(tok)
    label_ids = [_label_ids(lm, lab) for lab in labels]
    if any(not ids for ids in label_ids):
        raise ValueError(f"a label tokenizes to nothing: {labels!r}")
    if lm.backend is not None:  # a generator server: the labels' token strings, concurrent requests
        if lm.kind != "causal":
            from engine.agent import Unsupported

            raise Unsupported(f"{lm.backend.where}: label scoring on a generator server needs a causal model "
                              f"({lm.name} is {lm.kind}); load it in this process")
        pieces = [[tok.decode([i]) for i in ids] for ids in label_ids]
        return lm.backend.score_labels(list(prompts), pieces, adapter=lm.adapter, stats=stats)
    info = {"prefix_tokens": 0, "prefix_cached": False, "batches": 0, "fallback": None}
    out = np.zeros((len(prompts), len(labels)), dtype=np.float64)
    if not prompts:
        return out
    with torch.inference_mode():
        if lm.kind == "seq2seq":
            info["fallback"] = "seq2seq model: the encoder reads the whole input"
            for start in range(0, len(prompts), batch_size):
                out[start:start + batch_size] = _score_seq2seq(lm, prompts[start:start + batch_size], label_ids)
                info["batches"] += 1
        else:
            from engine.systems import prefix_cache

            ids = tok(list(prompts), add_special_tokens=_add_special(lm))["input_ids"]
            prefix, info["fallback"] = _shared_prefix(lm, ids, label_ids, share_prefix)
            if prefix is not None:
                try:
                    base, info["prefix_cached"] = prefix_cache.prefix_kv(lm.model, ids[0][:prefix])
                    info["prefix_tokens"] = base.length
                except prefix_cache.Unsupported as e:
                    base, info["fallback"] = None, f"prefix cache unsupported: {e}"
            else:
                base = None
            for start in range(0, len(prompts), batch_size):
                chunk = ids[start:start + batch_size]
                kv = base
                if base is not None and len(chunk) > 1:  # one row gains nothing from a longer prefix
                    more = prefix_cache.common_prefix_len(chunk)
                    more = min(more, min(len(x) for x in chunk) - 1)  # the last prompt token stays in the suffix
                    if more - base.length >= MIN_BATCH_EXTENSION:
                        kv = prefix_cache.extend(lm.model, base, chunk[0][base.length:more])
                out[start:start + len(chunk)] = _score_causal(lm, chunk, label_ids, kv)
                info["batches"] += 1
    if stats is not None:
        stats.update(info)
    return out


def _shared_prefix(lm: LoadedLM, ids: list[list[int]], label_ids: list[list[int]],
                   enabled: bool) -> tuple[int | None, str | None]:
    """(length of the prefix to cache, None) or (None, why the uncached path is used)."""
    from engine.systems.prefix_cache import common_prefix_len

    if not enabled:
        return None, "prefix sharing switched off by the caller"
    if getattr(lm.model, "training", False):
        return None, "model in training mode (dropout): keys/values would not be reusable"
    longest = max(len(x) for x in ids) + max(len(x) for x in label_ids)
    if longest > context_window(lm):
        return None, f"a prompt + label ({longest} tokens) exceeds the context window and is truncated"
    n = min(common_prefix_len(ids), min(len(x) for x in ids) - 1)
    if n < MIN_SHARED_PREFIX:
        return None, f"shared prefix of {max(n, 0)} tokens < {MIN_SHARED_PREFIX}"
    return n, None


def _score_seq2seq(lm: LoadedLM, chunk: list[str], label_ids: list[list[int]]) -> np.ndarray:
    """Seq2seq: each prompt repeated once per label, the label tokens as decoder targets."""
    import torch

    L = len(label_ids)
    rows = [(p, lab) for p in chunk for lab in range(L)]
    enc = _tokenize(lm, [p for p, _ in rows], max_length=context_window(lm))
    tmax = max(len(x) for x in label_ids)
    tgt = torch.full((len(rows), tmax), -100, dtype=torch.long)
    for r, (_, lab) in enumerate(rows):
        tgt[r, :len(label_ids[lab])] = torch.tensor(label_ids[lab])
    tgt = tgt.to(lm.model.device)
    logits = lm.model(**enc, labels=tgt).logits
    return _sum_target_logps(logits, tgt).reshape(len(chunk), L)


def _sum_target_logps(logits, targets) -> np.ndarray:
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    valid = targets != -100
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * valid).sum(-1).cpu().numpy()


def _score_causal(lm: LoadedLM, chunk: list[list[int]], label_ids: list[list[int]], prefix) -> np.ndarray:
    """Causal scores for token-id prompts ``chunk``, optionally after a shared ``prefix``
    (:class:`engine.systems.prefix_cache.PrefixKV`; its tokens are dropped from every prompt).

    Rows are left-padded so that every row ends with its prompt (one-token labels: one row per
    prompt, all labels read off the last position) or with prompt + label (one row per prompt and
    label): only the last positions need logits (a full-vocabulary logit tensor over whole prompts
    costs GBs with a 49k vocabulary). With a prefix, the padding sits between prefix and suffix: the
    attention mask covers prefix + suffix and positions continue from the prefix length.
    """
    import torch

    device, pad, window = lm.model.device, lm.tokenizer.pad_token_id, context_window(lm)
    P = prefix.length if prefix is not None else 0
    L = len(label_ids)
    single = all(len(x) == 1 for x in label_ids)
    if single:
        seqs = [p[P:] if P else p[-(window - 1):] for p in chunk]
        targets_l = [[-100] * len(s) for s in seqs]
        keep = 1
    else:
        seqs, targets_l = [], []
        for p in chunk:
            for lid in label_ids:
                pid = p[P:] if P else p[-max(1, window - len(lid)):]
                seqs.append(pid + lid)
                targets_l.append([-100] * len(pid) + lid)
        keep = max(len(x) for x in label_ids) + 1
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    tgt = torch.full((len(seqs), n), -100, dtype=torch.long)
    for r, (s, t) in enumerate(zip(seqs, targets_l)):
        ids[r, n - len(s):] = torch.tensor(s)
        mask[r, n - len(s):] = 1
        tgt[r, n - len(t):] = torch.tensor(t)
    pos = P + (mask.cumsum(-1) - 1).clamp(min=0)
    kw = dict(input_ids=ids.to(device), position_ids=pos.to(device))
    if prefix is not None:
        mask = torch.cat([torch.ones((len(seqs), P), dtype=torch.long), mask], dim=1)
        kw.update(past_key_values=prefix.expand(len(seqs)), use_cache=True)
    kw["attention_mask"] = mask.to(device)
    try:
        logits = lm.model(**kw, logits_to_keep=keep).logits
    except TypeError:  # a model without logits_to_keep
        logits = lm.model(**kw).logits
    if single:
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
        return logp[:, [x[0] for x in label_ids]].cpu().numpy().astype(np.float64)
    sums = _sum_target_logps(logits[:, -keep:-1], tgt[:, -(keep - 1):].to(device))
    return sums.reshape(len(chunk), L)


def label_probabilities(logps: np.ndarray) -> np.ndarray:
    """Softmax over the label axis of :func:`score_labels`' output."""
    z = logps - logps.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
