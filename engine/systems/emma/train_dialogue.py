"""Training EMMA's dialogue module: one backbone, three tasks selected by prefix (EMMA paper §4.1, App. E.1).

Datasets are built from ``memlab-episode/1`` episodes exactly as the paper describes them:

* **generation** — for every main-speaker utterance after the first turn of a session: the speakers
  (names and jobs), the memories tagged on that utterance (MiSC "Memory Tagging", §3.3) each followed by the
  memories linked to it (§4.2: "we not only provide the retrieved memories but also include associated
  memories linked to those memories"), the session ordinal and the current session's history → the
  utterance.  Only memories that exist at that point (formed in an earlier session) are given, as at
  inference time, where memories are summarised at the end of each session.
* **summarisation** — for every session and each of its two speakers: ``summarize [ABOUT_x]: <whole session>``
  → that session's memories about x joined by ``[SEP]``, or ``[NONE]`` (§4.1 "Memory Summarizer").
* **linking** — memory pairs (newer, older-or-same-session) → ``positive`` for annotated links and
  ``negative`` for pairs sampled from the unlinked ones (§4.1 "Memory Linker").

Stored memories carry the provenance suffix ``(about <name>, from <ordinal> session)`` (docs/architecture.md,
"EMMA release conventions"), so memory texts given to the generation and linking tasks carry it too; summarisation targets do not (the suffix is
added when a memory is stored).

Seq2seq backbones (FLAN-T5) get the paper's sequences (``engine.systems.emma.formats``); causal chat backbones
get the same tasks as chat-template prompts with the loss on the answer tokens only (``encoding.py``).
Defaults follow App. E.1: lr 1e-3, max input 1024, max target 64, LoRA r=32/alpha=32/dropout 0.1, QLoRA on
CUDA, at most 3 epochs with early stopping.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from engine.data.model import Episode, Memory
from engine.systems.emma import formats

from engine.training import encoding
from engine.training.lora import LoraSettings

TASKS = formats.TASKS  # ("generation", "summarize", "link")


@dataclass
class TaskExample:
    """One supervised example: ``fields`` are the keyword arguments of ``formats.seq2seq_input(task, ...)``
    and ``formats.chat_messages(task, ...)``; ``target`` the answer text."""

    task: str
    fields: dict
    target: str
    episode: str = ""


def _stored_text(m: Memory) -> str:
    return formats.with_provenance(m.text, m.about, m.session)


def _linked(episode: Episode, memory_id: str) -> list[str]:
    """Ids of the memories linked to ``memory_id`` in either direction, in link order."""
    out = []
    for link in episode.links:
        other = link.dst if link.src == memory_id else link.src if link.dst == memory_id else None
        if other is not None and other not in out:
            out.append(other)
    return out


def generation_examples(episode: Episode) -> list[TaskExample]:
    """Generation task (App. E.1 "Dialogue Generation"): one example per main-speaker utterance that has
    a preceding turn in its session."""
    by_id = {m.id: m for m in episode.memories}
    out = []
    for session in episode.sessions:
        history: list[tuple[str, str]] = []
        for turn in session.turns:
            if turn.speaker == episode.main.name and history:
                memories = []
                for mid in turn.memory_ids:
                    m = by_id[mid]
                    if m.session >= session.index:
                        continue  # formed at the end of this session: not in memory yet
                    linked = [_stored_text(by_id[x]) for x in _linked(episode, mid)
                              if by_id[x].session < session.index]
                    memories.append((_stored_text(m), linked))
                out.append(TaskExample("generation", {
                    "main": episode.main, "partner": session.partner, "memories": memories,
                    "session_index": session.index, "history": list(history), "bot_name": episode.main.name,
                }, turn.text, episode.id))
            history.append((turn.speaker, turn.text))
    return out


def summarization_examples(episode: Episode) -> list[TaskExample]:
    """Summarisation task (App. E.1 "Memory Summarization"): per session, one example about the main
    speaker and one about the partner; target = memories joined by [SEP] or [NONE]."""
    out = []
    for session in episode.sessions:
        turns = [(t.speaker, t.text) for t in session.turns]
        if not turns:
            continue
        for about in (episode.main.name, session.partner.name):
            texts = [m.text for m in episode.memories if m.session == session.index and m.about == about]
            out.append(TaskExample("summarize", {"about": about, "session_turns": turns},
                                   formats.summary_target(texts), episode.id))
    return out


def link_candidates(episode: Episode) -> list[tuple[Memory, Memory]]:
    """All (newer, older) memory pairs a linker is asked about: within the same session, then to earlier
    sessions (§4.1 "connections are initially established within the memory generated in ongoing sessions.
    Subsequently, these connections extend to ... previous sessions")."""
    order = {m.id: i for i, m in enumerate(episode.memories)}
    pairs = []
    for a in episode.memories:
        for b in episode.memories:
            if a.id != b.id and (a.session > b.session or a.session == b.session and order[a.id] > order[b.id]):
                pairs.append((a, b))
    return pairs


def link_examples(episode: Episode, rng: random.Random, negatives_per_positive: float = 1.0) -> list[TaskExample]:
    """Linking task (App. E.1 "Memory Connection"): annotated links → ``positive``; unlinked candidate
    pairs sampled at ``negatives_per_positive`` per positive → ``negative``."""
    by_id = {m.id: m for m in episode.memories}
    linked = {frozenset((l.src, l.dst)) for l in episode.links}
    pos = [(by_id[l.src], by_id[l.dst]) for l in episode.links]
    unlinked = [p for p in link_candidates(episode) if frozenset((p[0].id, p[1].id)) not in linked]
    k = min(len(unlinked), round(len(pos) * negatives_per_positive)) if pos else min(len(unlinked), 1)
    neg = rng.sample(unlinked, k)
    out = []
    for (a, b), label in [(p, formats.LINK_LABELS[0]) for p in pos] + [(p, formats.LINK_LABELS[1]) for p in neg]:
        out.append(TaskExample("link", {"m1": _stored_text(a), "m2": _stored_text(b)}, label, episode.id))
    return out


def build_examples(episodes: Sequence[Episode], *, tasks: Sequence[str] = TASKS, seed: int = 0,
                   negatives_per_positive: float = 1.0) -> list[TaskExample]:
    """The multi-task dataset of §4.1 for ``episodes`` (deterministic for a given ``seed``)."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; expected a subset of {TASKS}")
    rng = random.Random(seed)
    out: list[TaskExample] = []
    for ep in episodes:
        if "generation" in tasks:
            out += generation_examples(ep)
        if "summarize" in tasks:
            out += summarization_examples(ep)
        if "link" in tasks:
            out += link_examples(ep, rng, negatives_per_positive)
    return out


# -- encoding ----------------------------------------------------------------------------------------

def _fit_history(ex: TaskExample, tokenizer, kind: str, max_input: int) -> TaskExample:
    """Drop the oldest history turns of a generation example until its prompt fits ``max_input`` tokens
    (the end of the sequence — newest utterance and the bot tag — must survive truncation)."""
    if ex.task != "generation":
        return ex
    fields = dict(ex.fields)
    while True:
        if kind == "seq2seq":
            n = encoding.prompt_length(tokenizer, kind, source=formats.seq2seq_input("generation", **fields))
        else:
            n = encoding.prompt_length(tokenizer, kind, messages=formats.chat_messages("generation", **fields))
        if n <= max_input or len(fields["history"]) <= 1:
            return TaskExample(ex.task, fields, ex.target, ex.episode)
        fields["history"] = fields["history"][1:]


def encode_example(ex: TaskExample, tokenizer, kind: str, max_input: int = 1024, max_target: int = 64) -> dict:
    """Token ids + labels of one example: the paper's sequence (seq2seq) or a chat prompt (causal)."""
    ex = _fit_history(ex, tokenizer, kind, max_input)
    if kind == "seq2seq":
        return encoding.encode_seq2seq(tokenizer, formats.seq2seq_input(ex.task, **ex.fields), ex.target,
                                       max_input, max_target)
    return encoding.encode_chat(tokenizer, formats.chat_messages(ex.task, **ex.fields), ex.target,
                                max_input, max_target)


def encode_all(examples: Sequence[TaskExample], tokenizer, kind: str, max_input: int, max_target: int) -> list[dict]:
    out = []
    for ex in examples:
        enc = encode_example(ex, tokenizer, kind, max_input, max_target)
        enc["task"] = ex.task
        out.append(enc)
    return out


# -- evaluation --------------------------------------------------------------------------------------

def link_accuracy(model, tokenizer, kind: str, examples: Sequence[TaskExample], *, max_input: int = 1024,
                  batch_size: int = 16) -> float | None:
    """Share of link examples whose gold label is the likelier of the two label words.

    Scores both answers (``positive``/``negative``) by their log-probability — no sampling (docs/architecture.md, "Performance targets":
    links are computed "by scoring the two label tokens").
    """
    import torch

    from engine.training.loop import model_device, to_device

    links = [e for e in examples if e.task == "link"]
    if not links:
        return None
    pad = encoding.pad_id(tokenizer)
    device = model_device(model)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(links), batch_size):
                chunk = links[start:start + batch_size]
                encoded = [encode_example(TaskExample("link", e.fields, label), tokenizer, kind, max_input, 8)
                           for e in chunk for label in formats.LINK_LABELS]
                scores = encoding.answer_logprobs(model, to_device(encoding.collate(encoded, kind, pad), device),
                                                  kind).view(len(chunk), len(formats.LINK_LABELS))
                predicted = scores.argmax(-1).tolist()
                correct += sum(formats.LINK_LABELS[p] == e.target for p, e in zip(predicted, chunk))
    finally:
        model.train(was_training)
    return correct / len(links)


def example_losses(model, encoded: Sequence[dict], kind: str, pad: int,
                   cancel: threading.Event | None = None) -> list[float]:
    """Mean answer-token cross-entropy of each example (one at a time: no padding work)."""
    from engine.training.loop import evaluate

    out = []
    for e in encoded:
        if cancel is not None and cancel.is_set():
            break
        out.append(evaluate(model, [e], lambda b: encoding.collate(b, kind, pad), encoding.lm_loss, 1))
    return out


# -- the trainer -------------------------------------------------------------------------------------

@dataclass
class DialogueTrainSettings:
    """What ``memlab train emma-dialogue`` exposes.  ``backbone`` None = the embedded SmolLM2 default.
    ``max_train_examples``/``max_valid_examples`` subsample (seeded) for small CPU runs."""

    backbone: str | None = None
    max_input: int = 1024
    max_target: int = 64
    tasks: tuple[str, ...] = TASKS
    negatives_per_positive: float = 1.0
    max_train_examples: int | None = None
    max_valid_examples: int | None = None
    link_eval_pairs: int | None = None  # held-out link pairs for the accuracy (balanced); None = all
    device: str | None = None
    seed: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass
class DialogueReport:
    """What training changed, measured on the held-out split."""

    backbone: str
    kind: str
    out_dir: str
    n_train: int
    n_valid: int
    task_counts: dict
    before: dict
    after: dict
    result: dict
    reasons: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _subsample(items: list, n: int | None, seed: int) -> list:
    if n is None or len(items) <= n:
        return items
    return random.Random(seed).sample(items, n)


def held_out_link_pairs(examples: Sequence[TaskExample], n: int | None, seed: int) -> list[TaskExample]:
    """Up to ``n`` held-out link examples, half ``positive`` and half ``negative`` when possible."""
    links = [e for e in examples if e.task == "link"]
    if n is None or len(links) <= n:
        return links
    rng = random.Random(seed)
    by_label = {lab: [e for e in links if e.target == lab] for lab in formats.LINK_LABELS}
    pos = rng.sample(by_label["positive"], min(len(by_label["positive"]), n // 2))
    neg = rng.sample(by_label["negative"], min(len(by_label["negative"]), n - len(pos)))
    return pos + neg


def measure(model, tokenizer, kind: str, link_pairs, valid_encoded, pad, settings, batch_size) -> dict:
    """Validation loss (overall = mean over examples, and per task) and link-label accuracy on held-out
    pairs.  The overall loss equals the training loop's validation loss (evaluated one example at a time)."""
    t0 = time.process_time()
    losses = example_losses(model, valid_encoded, kind, pad)
    per_task = {}
    for task in TASKS:
        vals = [l for l, e in zip(losses, valid_encoded) if e["task"] == task]
        if vals:
            per_task[task] = sum(vals) / len(vals)
    out = {"overall": sum(losses) / len(losses) if losses else None, "loss": per_task,
           "link_accuracy": link_accuracy(model, tokenizer, kind, link_pairs, max_input=settings.max_input,
                                          batch_size=batch_size), "link_pairs": len(link_pairs)}
    out["cpu_s"] = time.process_time() - t0
    return out


def train_dialogue(train_episodes: Sequence[Episode], valid_episodes: Sequence[Episode], out_dir, *,
                   settings: DialogueTrainSettings | None = None, loop_config=None,
                   progress: Callable | None = None, cancel: threading.Event | None = None,
                   resume: bool = False, lm=None) -> DialogueReport:
    """Fine-tune EMMA's dialogue module with (Q)LoRA on the three tasks; writes a peft adapter to ``out_dir``.

    ``lm`` (a ``LoadedLM``) may be passed to train an already loaded backbone (tests); otherwise
    ``settings.backbone`` (or the embedded default) is loaded with 4-bit NF4 weights when CUDA is present.
    Returns before/after validation losses per task and link-label accuracy.
    """
    from engine.backbones.loading import load_lm

    from engine.training.lora import attach_lora, method_reason, wants_4bit
    from engine.training.loop import PeftAdapterIO, TrainConfig, train

    settings = settings or DialogueTrainSettings()
    loop_config = loop_config or TrainConfig(lr=1e-3, epochs=3)
    if lm is None:
        backbone = settings.backbone or _default_backbone()
        lm = load_lm(backbone, quantize_4bit=wants_4bit(settings.lora), device=settings.device)
    reasons = list(lm.plan.reasons)
    reasons.append(method_reason(lm.model, settings.lora))
    tok, kind = lm.tokenizer, lm.kind
    if kind == "causal" and not getattr(tok, "chat_template", None):
        raise ValueError(f"{lm.name}: a causal backbone needs a chat template for EMMA's tasks")

    train_ex = _subsample(build_examples(train_episodes, tasks=settings.tasks, seed=settings.seed,
                                         negatives_per_positive=settings.negatives_per_positive),
                          settings.max_train_examples, settings.seed)
    all_valid = build_examples(valid_episodes, tasks=settings.tasks, seed=settings.seed + 1,
                               negatives_per_positive=settings.negatives_per_positive)
    valid_ex = _subsample(all_valid, settings.max_valid_examples, settings.seed + 1)
    link_pairs = held_out_link_pairs(all_valid, settings.link_eval_pairs, settings.seed + 2)
    if not train_ex:
        raise ValueError("the training episodes yield no examples (no sessions, turns or memories)")
    counts = {t: sum(e.task == t for e in train_ex) for t in TASKS}
    reasons.append(f"{len(train_ex)} training examples {counts}, {len(valid_ex)} validation examples")
    train_enc = encode_all(train_ex, tok, kind, settings.max_input, settings.max_target)
    valid_enc = encode_all(valid_ex, tok, kind, settings.max_input, settings.max_target)

    model = attach_lora(lm.model, kind, settings.lora, reasons)
    pad = encoding.pad_id(tok)
    bs = loop_config.batch_size
    loop_config = replace(loop_config, eval_batch_size=1)  # validation loss = mean over examples, as measure()
    before = measure(model, tok, kind, link_pairs, valid_enc, pad, settings, bs) if valid_ex else {}
    result = train(model, train_enc, valid_enc, collate=lambda b: encoding.collate(b, kind, pad),
                   loss_fn=encoding.lm_loss, io=PeftAdapterIO(), out_dir=out_dir, config=loop_config,
                   progress=progress, cancel=cancel, resume=resume, reasons=reasons,
                   initial_eval_loss=before.get("overall"))
    after = measure(model, tok, kind, link_pairs, valid_enc, pad, settings, bs) if valid_ex else {}
    _write_base_name(Path(out_dir), lm.name)
    lm.model = model
    return DialogueReport(backbone=lm.name, kind=kind, out_dir=str(out_dir), n_train=len(train_ex),
                          n_valid=len(valid_ex), task_counts=counts, before=before, after=after,
                          result=asdict(result), reasons=result.reasons)


def _default_backbone() -> str:
    from engine.backbones.embedded import default_lm_path

    return str(default_lm_path())


def _write_base_name(out: Path, base: str) -> None:
    """Record the backbone in ``adapter_config.json`` (``base_model_name_or_path``) so the adapter says
    what it was trained on."""
    import json

    cfg_path = out / "adapter_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = base
        cfg_path.write_text(json.dumps(cfg, indent=2))
