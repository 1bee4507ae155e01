"""The shared training loop used by every trainer in MemLab (EMMA dialogue module, EMMA retriever, ...).

What it does, following EMMA App. E ("We train with a cross-entropy loss ... for a maximum of 3 epochs
with early stopping"; retriever: "a maximum of 20 epochs with early stopping"):

* AdamW over the trainable parameters only (LoRA weights, or a whole encoder), constant learning rate,
  gradient accumulation (effective batch = ``batch_size * grad_accum``; the paper's 52 and 90 are reached
  that way on small machines), optional gradient clipping;
* bf16 autocast on CUDA (mixed precision), fp32 on CPU — the choice is written into ``reasons``;
* evaluation on the validation split at the end of every epoch (and once before training, so the
  improvement can be reported), early stopping on the validation loss with ``patience``;
* checkpoints: ``OUT/checkpoint-last`` (model files through a :class:`ModelIO` — a standard peft adapter
  directory for LoRA models — plus ``optimizer.safetensors`` and ``trainer_state.json``) after every epoch
  and whenever training stops early; ``OUT/best`` for the best validation loss; the best weights are written
  to ``OUT`` itself at the end, together with ``OUT/training.json`` (history, reasons, timings);
* resumable: ``resume=True`` restores weights, AdamW moments, epoch and position in the epoch;
* a tqdm bar with the loss and ETA, a ``progress(ProgressEvent)`` callback for the desktop app, and
  cancellation through a ``threading.Event`` (stops at once, keeps a resumable checkpoint); a wall-clock
  budget (``max_seconds``) stops the same way.

No pickle: the optimizer state is stored as safetensors + JSON.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

LAST_DIR = "checkpoint-last"
BEST_DIR = "best"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
LOG_FILE = "training.json"


@dataclass
class TrainConfig:
    """Loop settings. ``max_steps``/``max_seconds`` bound small CPU runs; ``patience`` is the number of
    evaluations without improvement (by more than ``min_delta``) before early stopping."""

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 8
    grad_accum: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    patience: int = 1
    min_delta: float = 0.0
    max_steps: int | None = None
    max_seconds: float | None = None
    eval_before: bool = True
    eval_batch_size: int | None = None
    seed: int = 0
    mixed_precision: str = "auto"  # "auto" (bf16 on CUDA), "bf16", "no"
    show_bar: bool = True

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(f"mixed_precision must be auto, bf16 or no, got {self.mixed_precision!r}")


@dataclass
class ProgressEvent:
    """What the loop reports to ``progress``: phase is "eval", "train", "checkpoint" or "done"."""

    phase: str
    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float | None = None
    eval_loss: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    message: str = ""


@dataclass
class TrainResult:
    """status: "completed", "early-stopped", "cancelled", "budget" (max_seconds) or "max-steps"."""

    status: str
    out_dir: str
    epochs_done: int
    global_step: int
    initial_eval_loss: float | None
    best_eval_loss: float | None
    final_train_loss: float | None
    history: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0

    @property
    def resumable(self) -> bool:
        return self.status in ("cancelled", "budget", "max-steps")


class ModelIO(Protocol):
    """How a trainer's model is written to / read from a checkpoint directory."""

    def save(self, model, directory: Path) -> None: ...

    def load(self, model, directory: Path) -> None: ...


class PeftAdapterIO:
    """Checkpoints as standard peft adapter directories (``adapter_config.json`` +
    ``adapter_model.safetensors``), loadable with ``PeftModel.from_pretrained``."""

    def save(self, model, directory: Path) -> None:
        model.save_pretrained(str(directory))

    def load(self, model, directory: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(directory) / "adapter_model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no adapter weights in this checkpoint directory")
        result = set_peft_model_state_dict(model, load_file(str(path)))
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ValueError(f"{path}: adapter does not fit this model; unexpected keys e.g. {unexpected[:3]}")


LossFn = Callable[[Any, dict], Any]
Collate = Callable[[Sequence[Any]], dict]
Progress = Callable[[ProgressEvent], None]


def _batches(items: Sequence, size: int) -> list[list]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 1000003 + epoch).shuffle(order)
    return order


def model_device(model):
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def autocast_context(device, mixed_precision: str, reasons: list[str] | None = None):
    """bf16 autocast on CUDA (mixed precision), a no-op context elsewhere."""
    import contextlib

    import torch

    use = device.type == "cuda" and mixed_precision in ("auto", "bf16") and torch.cuda.is_bf16_supported()
    if mixed_precision == "bf16" and not use and reasons is not None:
        reasons.append("bf16 mixed precision asked for but not available here: training in fp32")
    if use:
        if reasons is not None:
            reasons.append("mixed precision: bf16 autocast on CUDA")
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    if reasons is not None and device.type != "cuda":
        reasons.append(f"full precision (fp32) on {device.type}: mixed precision is used on CUDA only")
    return contextlib.nullcontext


def evaluate(model, examples: Sequence, collate: Collate, loss_fn: LossFn, batch_size: int,
             amp=None, cancel: threading.Event | None = None) -> float | None:
    """Mean validation loss (each batch's loss weighted by its number of examples)."""
    import contextlib

    import torch

    if not examples:
        return None
    amp = amp or contextlib.nullcontext
    device = model_device(model)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for batch in _batches(examples, batch_size):
                if cancel is not None and cancel.is_set():
                    break
                with amp():
                    loss = loss_fn(model, to_device(collate(batch), device))
                total += float(loss) * len(batch)
                count += len(batch)
    finally:
        model.train(was_training)
    return total / count if count else None


# -- optimizer state without pickle ---------------------------------------------------------------

def save_optimizer(optimizer, path: Path) -> dict:
    """Write AdamW's tensors to safetensors; returns the JSON-able rest (param groups, scalars)."""
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if hasattr(value, "detach"):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    save_file(tensors, str(path))
    return {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(optimizer, path: Path, meta: dict) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# -- the loop ------------------------------------------------------------------------------------------

class _Stop(Exception):
    def __init__(self, status: str):
        self.status = status


def train(model, train_examples: Sequence, valid_examples: Sequence | None, *, collate: Collate,
          loss_fn: LossFn, io: ModelIO, out_dir, config: TrainConfig | None = None,
          progress: Progress | None = None, cancel: threading.Event | None = None,
          resume: bool = False, reasons: list[str] | None = None,
          initial_eval_loss: float | None = None) -> TrainResult:
    """Train ``model`` (its ``requires_grad`` parameters) on ``train_examples`` with ``loss_fn``.

    ``collate(list_of_examples) -> dict of tensors``; ``loss_fn(model, batch) -> scalar loss``.
    ``initial_eval_loss``: the validation loss before training when the caller already measured it
    (skips the duplicate evaluation).  Returns a :class:`TrainResult`; the best (or, without validation data, the last) weights are in
    ``out_dir``.  With ``resume=True`` and a ``checkpoint-last`` in ``out_dir`` training continues
    where it stopped (same order of examples, AdamW moments restored).
    """
    import torch

    config = config or TrainConfig()
    reasons = list(reasons or [])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not train_examples:
        raise ValueError("no training examples")
    valid_examples = list(valid_examples or [])
    device = model_device(model)
    amp = autocast_context(device, config.mixed_precision, reasons)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    eval_bs = config.eval_batch_size or config.batch_size
    micro_per_epoch = math.ceil(len(train_examples) / config.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    st = {"epoch": 0, "micro": 0, "global_step": 0, "best": None, "initial": None, "bad": 0,
          "history": [], "train_loss": None, "elapsed_before": 0.0, "cpu_before": 0.0, "status": None}
    last = out / LAST_DIR
    if resume and (last / STATE_FILE).is_file():
        saved = json.loads((last / STATE_FILE).read_text())
        io.load(model, last)
        load_optimizer(optimizer, last / OPTIMIZER_FILE, saved["optimizer"])
        for key in st:
            if key in saved:
                st[key] = saved[key]
        reasons.append(f"resumed from {last} at epoch {st['epoch'] + 1}, step {st['global_step']}")
        if st["status"] in ("completed", "early-stopped"):
            reasons.append(f"that run had already finished ({st['status']}); nothing to do")
    elif resume:
        reasons.append(f"--resume: no checkpoint in {out}, starting from the beginning")

    t0, c0 = time.monotonic(), time.process_time()

    def elapsed():
        return st["elapsed_before"] + time.monotonic() - t0

    steps_at_start = st["global_step"]

    def eta():
        done = st["global_step"] - steps_at_start
        if done <= 0:
            return None
        return (time.monotonic() - t0) / done * max(0, total_steps - st["global_step"])

    def emit(phase, message="", loss=None, eval_loss=None):
        if progress is not None:
            progress(ProgressEvent(phase, st["epoch"] + (phase == "train"), config.epochs, st["global_step"],
                                   total_steps, loss, eval_loss, elapsed(), eta(), message))

    def checkpoint(status=None):
        last.mkdir(parents=True, exist_ok=True)
        io.save(model, last)
        meta = save_optimizer(optimizer, last / OPTIMIZER_FILE)
        saved = {k: st[k] for k in st if k not in ("elapsed_before", "cpu_before")}
        saved.update(status=status, optimizer=meta, elapsed_before=elapsed(),
                     cpu_before=st["cpu_before"] + time.process_time() - c0, config=asdict(config))
        tmp = last / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(saved, indent=1))
        tmp.replace(last / STATE_FILE)
        emit("checkpoint", f"checkpoint saved to {last}")

    def run_eval(label):
        emit("eval", f"evaluating ({label}) on {len(valid_examples)} validation examples")
        loss = evaluate(model, valid_examples, collate, loss_fn, eval_bs, amp, cancel)
        if cancel is not None and cancel.is_set():
            raise _Stop("cancelled")
        emit("eval", f"validation loss {loss:.4f} ({label})", eval_loss=loss)
        return loss

    bar = None
    status = st["status"]
    try:
        if status in ("completed", "early-stopped"):
            raise _Stop(status)
        if valid_examples and initial_eval_loss is not None and st["initial"] is None:
            st["initial"] = initial_eval_loss
            st["history"].append({"epoch": 0, "step": 0, "eval_loss": st["initial"]})
        if valid_examples and config.eval_before and st["initial"] is None:
            st["initial"] = run_eval("before training")
            st["history"].append({"epoch": 0, "step": 0, "eval_loss": st["initial"]})
        if st["initial"] is not None and st["best"] is None:
            st["best"] = st["initial"]
            io.save(model, out / BEST_DIR)
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=st["global_step"], disable=not config.show_bar,
                   desc="training", unit="step", dynamic_ncols=True)
        model.train()
        while st["epoch"] < config.epochs:
            order = _epoch_order(len(train_examples), config.seed, st["epoch"])
            micro_batches = _batches([train_examples[i] for i in order], config.batch_size)
            boundary = st["micro"]
            running, n_running = 0.0, 0
            optimizer.zero_grad(set_to_none=True)
            for mi in range(st["micro"], len(micro_batches)):
                if cancel is not None and cancel.is_set():
                    st["micro"] = boundary
                    raise _Stop("cancelled")
                if config.max_seconds is not None and elapsed() >= config.max_seconds:
                    st["micro"] = boundary
                    raise _Stop("budget")
                if config.max_steps is not None and st["global_step"] >= config.max_steps:
                    st["micro"] = boundary
                    raise _Stop("max-steps")
                batch = to_device(collate(micro_batches[mi]), device)
                # the last accumulation group of an epoch may be shorter
                group_start = (mi // config.grad_accum) * config.grad_accum
                group_size = min(config.grad_accum, len(micro_batches) - group_start)
                with amp():
                    loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {float(loss)} at step {st['global_step']}; "
                                             "lower the learning rate")
                (loss / group_size).backward()
                running += float(loss.detach())
                n_running += 1
                if mi + 1 - group_start == group_size:
                    if config.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    st["global_step"] += 1
                    st["micro"] = boundary = mi + 1
                    st["train_loss"] = running / n_running
                    bar.update(1)
                    bar.set_postfix(loss=f"{st['train_loss']:.4f}", epoch=st["epoch"] + 1)
                    emit("train", loss=st["train_loss"])
                    running, n_running = 0.0, 0
            st["epoch"] += 1
            st["micro"] = 0
            entry = {"epoch": st["epoch"], "step": st["global_step"], "train_loss": st["train_loss"]}
            if valid_examples:
                loss = run_eval(f"epoch {st['epoch']}")
                entry["eval_loss"] = loss
                if st["best"] is None or loss < st["best"] - config.min_delta:
                    st["best"], st["bad"] = loss, 0
                    io.save(model, out / BEST_DIR)
                else:
                    st["bad"] += 1
            st["history"].append(entry)
            if valid_examples and st["bad"] >= config.patience and st["epoch"] < config.epochs:
                checkpoint("early-stopped")
                raise _Stop("early-stopped")
            checkpoint("completed" if st["epoch"] >= config.epochs else None)
        status = "completed"
    except _Stop as stop:
        status = stop.status
        if status in ("budget", "max-steps") and valid_examples and st["global_step"] > 0:
            # stopped mid-epoch by a budget: validate what was trained so "best" can include it
            loss = run_eval(f"stopped by {status} at step {st['global_step']}")
            st["history"].append({"epoch": st["epoch"] + st["micro"] / max(1, micro_per_epoch),
                                  "step": st["global_step"], "train_loss": st["train_loss"], "eval_loss": loss})
            if st["best"] is None or loss < st["best"] - config.min_delta:
                st["best"] = loss
                io.save(model, out / BEST_DIR)
        if status in ("cancelled", "budget", "max-steps"):
            checkpoint(None)
    finally:
        if bar is not None:
            bar.close()

    # the result: best weights (by validation loss) into OUT, or the last weights without validation data
    best = out / BEST_DIR
    if valid_examples and st["best"] is not None and best.is_dir():
        io.load(model, best)
        reasons.append(f"final weights = those with the best validation loss ({st['best']:.4f})")
    io.save(model, out)
    result = TrainResult(status=status, out_dir=str(out), epochs_done=st["epoch"], global_step=st["global_step"],
                         initial_eval_loss=st["initial"], best_eval_loss=st["best"],
                         final_train_loss=st["train_loss"], history=st["history"], reasons=reasons,
                         elapsed_s=elapsed(), cpu_s=st["cpu_before"] + time.process_time() - c0)
    (out / LOG_FILE).write_text(json.dumps(asdict(result) | {"config": asdict(config)}, indent=1))
    emit("done", f"training {status}: {st['global_step']} steps, best validation loss {st['best']}")
    return result


def remove_checkpoints(out_dir) -> None:
    """Delete the resumable checkpoint and best copy once the caller has what it needs."""
    for name in (LAST_DIR, BEST_DIR):
        shutil.rmtree(Path(out_dir) / name, ignore_errors=True)
