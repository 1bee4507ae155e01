"""Training one user's parameterised memory and measuring it — the inner loop of the search (§2.2) and
the session-end step of the live agent.

* :func:`memory_examples` — the user's history as fixed text phrases for next-content prediction (§3.1):
  the transcript, cut into windows of consecutive turns, causal-LM loss on every token.
* :func:`response_examples` — (context, reply) pairs in the chat layout of :mod:`.prompts`: the
  validation set of the search (cross-entropy of the reply, §2.2.2 "l = −1/N Σ log P(y_i | y_<i, U, x)")
  and the instruction-tuning examples (§2.3).
* :func:`train_memory` — inject θ (Eq. 1) and train it with the shared loop (AdamW 5e-4, 10% linear
  warm-up, weight decay 1e-4, batch 8; §3.4), optionally without checkpoints (a search trial).
* :func:`measure` — both objectives of §2.2.2: validation cross-entropy ↓ and ROUGE-L ↑ of greedy replies.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from . import prompts
from .config import Theta, TrainSettings
from .model import MEMORY


def memory_lora_settings(theta: Theta, dropout: float = 0.0):
    """n parallel rank-r modules as one rank-n·r module with lora_alpha = n·r (Eq. 1 has scale 1); see
    :mod:`engine.systems.milp.model` for why this is exactly the sum of n modules."""
    from engine.training.lora import LoraSettings

    rank = theta.total_rank
    return LoraSettings(r=rank, alpha=rank, dropout=dropout, quantize="none")


def inject(model, kind: str, theta: Theta, *, adapter_name: str = MEMORY, dropout: float = 0.0,
           reasons: list[str] | None = None):
    """Attach θ's memory adapter (Eq. 1 on the FFN projections of θ's layers, peft ``layers_to_transform``);
    on a peft model it is added as one more named adapter.  Returns the peft model."""
    if not theta.injects:
        raise ValueError("θ injects nothing (n = 0 or no layer on): use the base model")
    from engine.training.lora import attach_lora

    return attach_lora(model, kind, memory_lora_settings(theta, dropout), reasons, adapter_name=adapter_name,
                       targets="ffn", layers_to_transform=theta.layers)


def num_layers(model) -> int:
    from engine.training.lora import num_layers as count

    return count(model)


def ffn_shapes(model) -> dict[str, tuple[int, int]]:
    """(in, out) features of every FFN projection, by module name."""
    from engine.training.lora import projection_modules

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    mods = dict(base.named_modules())
    out = {}
    for name in projection_modules(base, "ffn"):
        w = mods[name].weight
        out[name] = (w.shape[0], w.shape[1]) if type(mods[name]).__name__ == "Conv1D" else (w.shape[1], w.shape[0])
    return out


def injected_parameters(shapes: dict[str, tuple[int, int]], theta: Theta) -> int:
    """Trainable parameters θ adds: Σ over the FFN projections of active layers of n·r·(in + out)
    (Appendix D, Eq. 6: Parameters/LoRA × n)."""
    from engine.training.lora import layer_index

    if not theta.injects:
        return 0
    on = set(theta.layers)
    return sum(theta.total_rank * (i + o) for name, (i, o) in shapes.items() if layer_index(name) in on)


@dataclass
class Exchange:
    """One reply to predict: the context turns (speaker, text) before it and the reply itself."""

    context: list[tuple[str, str]]
    reply: str
    user_content: list[str] = field(default_factory=list)


def exchanges(turns: list[tuple[str, str]], main: str) -> list[Exchange]:
    """Every turn of ``main`` that follows a partner turn, with the turns before it as context."""
    out = []
    for i, (speaker, text) in enumerate(turns):
        if speaker == main and i > 0 and turns[i - 1][0] != main:
            out.append(Exchange(list(turns[:i]), text))
    return out


def memory_examples(lm, turns: list[tuple[str, str]], settings: TrainSettings, window: int = 3) -> list[dict]:
    """Windows of ``window`` consecutive turns of the user's transcript, as plain-text LM examples
    (labels = input ids: next-content prediction over the whole phrase)."""
    tok = lm.tokenizer
    out = []
    starts = range(0, max(1, len(turns) - window + 1))
    for s in starts:
        text = prompts.transcript(turns[s:s + window])
        ids = tok(text, add_special_tokens=False, truncation=True, max_length=settings.max_input_tokens)["input_ids"]
        if tok.eos_token_id is not None:
            ids = list(ids) + [tok.eos_token_id]
        out.append({"input_ids": list(ids), "labels": list(ids)})
    return out


def chat_messages(ex: Exchange, main: str, partner: str, job: str = "") -> list[dict]:
    return prompts.messages(main, partner, ex.context, job=job, user_content=ex.user_content or None)


def response_examples(lm, items: list[Exchange], main: str, partner: str, settings: TrainSettings,
                      job: str = "") -> list[dict]:
    from engine.training.encoding import encode_chat

    return [encode_chat(lm.tokenizer, chat_messages(ex, main, partner, job), ex.reply,
                        settings.max_input_tokens, settings.max_target_tokens) for ex in items]


def loop_config(settings: TrainSettings, *, checkpoints: bool, show_bar: bool = False):
    from engine.training.loop import TrainConfig

    return TrainConfig(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size,
                       weight_decay=settings.weight_decay, warmup_ratio=settings.warmup_ratio,
                       max_steps=settings.max_steps, max_seconds=settings.max_seconds, seed=settings.seed,
                       eval_before=False, patience=10 ** 6, save_checkpoints=checkpoints, show_bar=show_bar)


def collate_for(lm):
    from engine.training import encoding

    pad = encoding.pad_id(lm.tokenizer)
    return lambda batch: encoding.collate(batch, lm.kind, pad)


def train_memory(lm, theta: Theta, train_examples: list[dict], settings: TrainSettings, *,
                 adapter_name: str = MEMORY, progress=None, cancel: threading.Event | None = None,
                 reasons: list[str] | None = None):
    """Inject θ into ``lm.model`` (wrapping it in a peft model, or adding a named adapter) and train it on
    ``train_examples`` with no checkpoints.  Returns (peft model, TrainResult)."""
    import torch

    from engine.training import encoding
    from engine.training.loop import train

    torch.manual_seed(settings.seed)  # the same LoRA initialisation for the same θ
    model = inject(lm.model, lm.kind, theta, adapter_name=adapter_name, dropout=settings.dropout, reasons=reasons)
    lm.model = model
    result = train(model, train_examples, None, collate=collate_for(lm), loss_fn=encoding.lm_loss,
                   config=loop_config(settings, checkpoints=False), progress=progress, cancel=cancel,
                   reasons=reasons)
    return model, result


def cross_entropy(lm, examples: list[dict], batch_size: int = 4) -> float:
    from engine.training import encoding
    from engine.training.loop import evaluate

    return float(evaluate(lm.model, examples, collate_for(lm), encoding.lm_loss, batch_size))


def greedy_replies(lm, items: list[Exchange], main: str, partner: str, max_new_tokens: int = 40,
                   job: str = "") -> list[str]:
    from engine.systems.generation import GenerationSettings, generate_text, render_chat

    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.1)
    return [generate_text(lm, render_chat(lm, chat_messages(ex, main, partner, job)), settings) for ex in items]


def rouge_l(hypotheses: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (the metrics module's, the rouge-score library underneath)."""
    try:
        from engine.metrics.overlap import rougeL
    except ImportError:  # until the metrics module lands: the same library, the same settings
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        scores = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)]
        return sum(scores) / len(scores) if scores else 0.0
    return float(rougeL(hypotheses, references))


@dataclass
class Objectives:
    """The two objectives of §2.2.2 for one θ, plus what they cost."""

    cross_entropy: float
    rouge_l: float
    trainable_params: int
    train_s: float
    measure_s: float
    train_loss: float | None
    replies: list[str] = field(default_factory=list)


def measure(lm, valid_examples: list[dict], gen_items: list[Exchange], main: str, partner: str,
            max_new_tokens: int = 40) -> tuple[float, float, list[str]]:
    ce = cross_entropy(lm, valid_examples)
    replies = greedy_replies(lm, gen_items, main, partner, max_new_tokens)
    return ce, rouge_l(replies, [ex.reply for ex in gen_items]), replies


def unload(lm) -> None:
    """Take every adapter off ``lm.model`` (peft ``unload``: the LoRA layers removed, base weights intact)."""
    from peft import PeftModel

    if isinstance(lm.model, PeftModel):
        lm.model = lm.model.unload()


def run_trial(lm, theta: Theta, train_examples: list[dict], valid_examples: list[dict], gen_items: list[Exchange],
              main: str, partner: str, settings: TrainSettings, *, max_new_tokens: int = 40,
              cancel: threading.Event | None = None) -> Objectives:
    """One search trial (§2.2, Fig. 2): train θ's memory on the user's history, measure both objectives,
    take the adapter off again.  θ that injects nothing measures the base model."""
    from engine.training.loop import trainable_parameters

    t0 = time.monotonic()
    params, loss = 0, None
    try:
        if theta.injects:
            model, result = train_memory(lm, theta, train_examples, settings, cancel=cancel)
            params = sum(p.numel() for p in trainable_parameters(model))
            loss = result.final_train_loss
        t1 = time.monotonic()
        lm.model.eval()
        ce, rl, replies = measure(lm, valid_examples, gen_items, main, partner, max_new_tokens)
    finally:
        unload(lm)
    return Objectives(ce, rl, params, t1 - t0, time.monotonic() - t1, loss, replies)


# -- one partner's memory at session end (the live agent) -----------------------------------------------

def _relay(progress, what: str):
    """The loop's ProgressEvent → the agent contract's progress(label, done, total)."""
    if progress is None:
        return None

    def report(ev):
        if ev.phase == "train":
            loss = f", loss {ev.loss:.3f}" if ev.loss is not None else ""
            progress(f"{what}: step {ev.step}/{ev.total_steps}{loss}", ev.step, max(1, ev.total_steps))
    return report


def train_partner(bank, key: str, theta: Theta, turns: list[tuple[str, str]], settings: TrainSettings, *,
                  progress=None, cancel: threading.Event | None = None, window: int = 2) -> dict:
    """Train (first meeting) or update (return) partner ``key``'s memory adapter in ``bank`` on ``turns``
    (that partner's whole history: replaying it keeps the older sessions in memory), within
    ``settings.max_seconds``; the instruction adapter, when there is one, is active and frozen."""
    import torch

    from engine.training import encoding
    from engine.training.loop import train

    lm = bank.lm
    examples = memory_examples(lm, turns, settings, window=window)
    first = not bank.has(key)
    reasons: list[str] = []
    if first:
        torch.manual_seed(settings.seed)
        target = bank.peft if bank.peft is not None else bank.base
        peft = inject(target, lm.kind, theta, adapter_name=key, dropout=settings.dropout, reasons=reasons)
        bank.set_peft(peft, key)
    peft = bank.peft
    peft.base_model.enable_adapter_layers()
    active = [n for n in (bank.instruct, key) if n]
    peft.base_model.set_adapter(active if len(active) > 1 else active[0])
    for n, p in peft.named_parameters():
        p.requires_grad_("lora_" in n and f".{key}." in n)
    what = ("training a new memory" if first else "updating the memory") + f" ({theta.describe()})"
    try:
        result = train(peft, examples, None, collate=collate_for(lm), loss_fn=encoding.lm_loss,
                       config=loop_config(settings, checkpoints=False), progress=_relay(progress, what),
                       cancel=cancel, reasons=reasons)
    finally:
        for p in peft.parameters():
            p.requires_grad_(False)
        peft.eval()
        bank._disable()
    return {"first": first, "status": result.status, "steps": result.global_step, "loss": result.final_train_loss,
            "seconds": round(result.elapsed_s, 1), "examples": len(examples), "reasons": reasons}
