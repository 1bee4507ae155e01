"""The shared training loop used by every trainer in MemLab (EMMA dialogue module, EMMA retriever, ...).

What it does, following EMMA App. E ("We train with a cross-entropy loss ... for a maximum of 3 epochs
with early stopping"; retriever: "a maximum of 20 epochs with early stopping"):

* AdamW over the trainable parameters only (LoRA weights, or a whole encoder), or over caller-supplied
  parameter groups, or the caller's own optimizer; constant learning rate, or a linear warm-up
  (``warmup_ratio``/``warmup_steps``; MiLP §3.1: "a linear warm-up scheduler initialized with 10% of the total
  training steps") followed by a constant or linearly decaying rate (``schedule``); gradient accumulation (effective batch = ``batch_size * grad_accum``; the paper's 52 and 90 are reached
  that way on small machines), optional gradient clipping;
* bf16 autocast on CUDA (mixed precision), fp32 on CPU — the choice is written into ``reasons``;
* evaluation on the validation split at the end of every epoch (and once before training, so the
  improvement can be reported), early stopping with ``patience`` on the validation loss or on a
  caller-supplied validation ``measure(model) -> float`` minimised or maximised (``measure_mode``);
* checkpoints: ``OUT/checkpoint-last`` (model files through a :class:`ModelIO` — a standard peft adapter
  directory for LoRA models — plus ``optimizer.safetensors`` and ``trainer_state.json``) after every epoch
  and whenever training stops early; ``OUT/best`` for the best validation loss; the best weights are written
  to ``OUT`` itself at the end, together with ``OUT/training.json`` (history, reasons, timings);
* a no-checkpoint mode (``save_checkpoints=False``, ``out_dir=None`` allowed): nothing is written, the
  best weights are kept in memory and restored at the end (a cheap search trial, MiLP §2.2);
* resumable: ``resume=True`` restores weights, AdamW moments, epoch and position in the epoch;
* data parallel under ``accelerate launch`` (:mod:`engine.training.distributed`): the global batch split
  across processes, gradients averaged, checkpoints/progress from rank 0 — the same command, unchanged;
* a tqdm bar with the loss and ETA, a ``progress(ProgressEvent)`` callback for the desktop app, and
  cancellation through a ``threading.Event`` (stops at once, keeps a resumable checkpoint); a wall-clock
  budget (``max_seconds``) stops the same way.

No pickle: the optimizer state is stored as safetensors + JSON.

Parts, usable on their own: :class:`Stepper` (one optimizer step over a group of micro-batches: autocast,
accumulation, clipping, scheduler), :func:`make_optimizer`, :func:`warmup_scheduler`,
:func:`save_checkpoint` / :func:`load_checkpoint`, :func:`evaluate`; :func:`train` is the epoch loop
built from them.
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
    warmup_ratio: float = 0.0      # fraction of the total optimizer steps spent warming the rate up linearly
    warmup_steps: int | None = None  # explicit warm-up length (wins over warmup_ratio)
    schedule: str = "constant"     # after warm-up: "constant" or "linear" (decay to 0 at the last step)
    measure_mode: str = "min"      # the validation measure is minimised ("min", a loss) or maximised ("max")
    save_checkpoints: bool = True  # False: write nothing; keep the best weights in memory

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(f"mixed_precision must be auto, bf16 or no, got {self.mixed_precision!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule not in ("constant", "linear"):
            raise ValueError(f"schedule must be constant or linear, got {self.schedule!r}")
        if self.measure_mode not in ("min", "max"):
            raise ValueError(f"measure_mode must be min or max, got {self.measure_mode!r}")


@dataclass
class ProgressEvent:
    """What the loop reports to ``progress``: phase is "eval", "train", "checkpoint" or "done".
    ``eval_loss`` carries the validation value (the loss, or the caller's measure when one is given)."""

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
    """status: "completed", "early-stopped", "cancelled", "budget" (max_seconds) or "max-steps".

    ``best_eval_loss``/``initial_eval_loss`` are the validation loss (without a measure) or the measure's
    value (with one; ``measure_name`` says which and ``measure_mode`` whether lower or higher is better)."""

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
    measure_name: str = "eval_loss"
    measure_mode: str = "min"

    @property
    def resumable(self) -> bool:
        return self.status in ("cancelled", "budget", "max-steps")


class ModelIO(Protocol):
    """How a trainer's model is written to / read from a checkpoint directory."""

    def save(self, model, directory: Path) -> None: ...

    def load(self, model, directory: Path) -> None: ...


class PeftAdapterIO:
    """Checkpoints as standard peft adapter directories (``adapter_config.json`` +
    ``adapter_model.safetensors``), loadable with ``PeftModel.from_pretrained``.  A named adapter other
    than ``default`` lives in the sub-directory peft gives it (``<dir>/<name>/``)."""

    def save(self, model, directory: Path) -> None:
        model.save_pretrained(str(directory))

    def load(self, model, directory: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        name = getattr(model, "active_adapter", "default")
        name = name if isinstance(name, str) else "default"
        path = Path(directory) / "adapter_model.safetensors"
        if not path.is_file() and (Path(directory) / name / "adapter_model.safetensors").is_file():
            path = Path(directory) / name / "adapter_model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no adapter weights in this checkpoint directory")
        result = set_peft_model_state_dict(model, load_file(str(path)), adapter_name=name)
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


# -- the parts: optimizer, scheduler, stepper, checkpoints -------------------------------------------

def trainable_parameters(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(model, config: TrainConfig, param_groups: Sequence[dict] | None = None):
    """AdamW over ``param_groups`` (torch's ``[{"params": [...], "lr": ...}, ...]``; a group without
    ``lr``/``weight_decay`` takes the config's) or, without groups, over the trainable parameters."""
    import torch

    if param_groups is not None:
        groups = [dict(g, params=list(g.get("params", []))) for g in param_groups]
        if not groups or not all(g["params"] for g in groups):
            raise ValueError("every parameter group needs at least one parameter")
    else:
        params = trainable_parameters(model)
        if not params:
            raise ValueError("the model has no trainable parameters")
        groups = [{"params": params}]
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def warmup_steps_for(config: TrainConfig, total_steps: int) -> int:
    if config.warmup_steps is not None:
        return min(config.warmup_steps, total_steps)
    return int(round(config.warmup_ratio * total_steps))


def warmup_scheduler(optimizer, warmup: int, total_steps: int, schedule: str = "constant"):
    """Linear warm-up over ``warmup`` optimizer steps (rate (s+1)/warmup of the group's rate), then
    ``constant`` or ``linear`` decay to 0 at ``total_steps`` (MiLP §3.1).  A ``torch.optim.lr_scheduler.LambdaLR``."""
    import torch

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Stepper:
    """One optimizer step over a group of micro-batches: autocast, gradient accumulation (each micro-batch's
    loss divided by the group size), a non-finite-loss check, clipping, the optimizer and scheduler step.

    ``collate(list_of_examples) -> dict of tensors``; ``loss_fn(model, batch) -> scalar loss``.
    """

    def __init__(self, model, *, collate: Collate, loss_fn: LossFn, config: TrainConfig, total_steps: int,
                 optimizer=None, param_groups: Sequence[dict] | None = None, reasons: list[str] | None = None,
                 parallel=None):
        self.model, self.collate, self.loss_fn, self.config = model, collate, loss_fn, config
        self.parallel = parallel  # an engine.training.distributed.DataParallel under `accelerate launch`
        self.device = model_device(model)
        self.amp = autocast_context(self.device, config.mixed_precision, reasons)
        self.optimizer = optimizer if optimizer is not None else make_optimizer(model, config, param_groups)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if not self.params:
            raise ValueError("the optimizer has no parameters")
        warm = warmup_steps_for(config, total_steps)
        self.scheduler = None
        if warm > 0 or config.schedule != "constant":
            self.scheduler = warmup_scheduler(self.optimizer, warm, total_steps, config.schedule)
            if reasons is not None:
                reasons.append(f"learning rate: linear warm-up over {warm} of {total_steps} steps, then {config.schedule}")
        self.steps = 0

    def step(self, micro_batches: Sequence[Sequence]) -> float:
        """Forward/backward every micro-batch of the group, then one optimizer step; returns the mean loss."""
        import torch

        total = 0.0
        for examples in micro_batches:
            examples, weight = list(examples), 1.0
            if self.parallel is not None:  # this rank's share of the global micro-batch (distributed.py)
                examples, weight = self.parallel.shard(examples)
                if not examples:
                    continue
            batch = to_device(self.collate(examples), self.device)
            with self.amp():
                loss = self.loss_fn(self.model, batch)
            if not torch.isfinite(loss) and self.parallel is None:
                raise FloatingPointError(f"training loss became {float(loss)} at step {self.steps}; "
                                         "lower the learning rate")
            (loss * (weight / len(micro_batches))).backward()
            total += float(loss.detach()) * weight
        if self.parallel is not None:
            self.parallel.average_gradients(self.params)
            total = self.parallel.mean(total)
            if not math.isfinite(total):
                raise FloatingPointError(f"training loss became {total} at step {self.steps}; lower the learning rate")
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return total / len(micro_batches)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


def save_checkpoint(directory: Path, model, io: ModelIO, optimizer, state: dict, scheduler=None) -> None:
    """A resumable checkpoint: the model through ``io``, AdamW's moments as safetensors, ``state`` (JSON-able)
    plus the scheduler position in ``trainer_state.json`` (written atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    io.save(model, directory)
    saved = dict(state, optimizer=save_optimizer(optimizer, directory / OPTIMIZER_FILE))
    if scheduler is not None:
        saved["scheduler_step"] = scheduler.last_epoch
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(saved, indent=1))
    tmp.replace(directory / STATE_FILE)


def load_checkpoint(directory: Path, model, io: ModelIO, optimizer, scheduler=None) -> dict | None:
    """Restore what :func:`save_checkpoint` wrote; returns the saved state, or None without a checkpoint."""
    directory = Path(directory)
    if not (directory / STATE_FILE).is_file():
        return None
    saved = json.loads((directory / STATE_FILE).read_text())
    io.load(model, directory)
    load_optimizer(optimizer, directory / OPTIMIZER_FILE, saved["optimizer"])
    if scheduler is not None and "scheduler_step" in saved:
        scheduler.last_epoch = saved["scheduler_step"]
        for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_lr()):
            group["lr"] = lr
    return saved


class _BestKeeper:
    """The weights with the best validation value: ``OUT/best`` through ``io``, or (no-checkpoint mode) an
    in-memory copy of the trainable tensors."""

    def __init__(self, model, io: ModelIO | None, out: Path | None, parallel=None):
        self.model, self.io, self.out, self.parallel = model, io, out, parallel
        self.snapshot: dict | None = None

    def save(self) -> None:
        if self.out is not None:
            _on_main(self.parallel, lambda: self.io.save(self.model, self.out / BEST_DIR))
        else:
            self.snapshot = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def restore(self) -> bool:
        import torch

        if self.out is not None:
            if not (self.out / BEST_DIR).is_dir():
                return False
            self.io.load(self.model, self.out / BEST_DIR)
            return True
        if self.snapshot is None:
            return False
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                if n in self.snapshot:
                    p.copy_(self.snapshot[n])
        return True


# -- the loop ------------------------------------------------------------------------------------------

def _on_main(parallel, write) -> None:
    """Run a write on rank 0 only (every process when not distributed), then let the others catch up."""
    if parallel is None:
        write()
        return
    if parallel.is_main:
        write()
    parallel.barrier()


class _Stop(Exception):
    def __init__(self, status: str):
        self.status = status


Measure = Callable[[Any], float]


def train(model, train_examples: Sequence, valid_examples: Sequence | None, *, collate: Collate,
          loss_fn: LossFn, io: ModelIO | None = None, out_dir=None, config: TrainConfig | None = None,
          progress: Progress | None = None, cancel: threading.Event | None = None,
          resume: bool = False, reasons: list[str] | None = None,
          initial_eval_loss: float | None = None, optimizer=None, param_groups: Sequence[dict] | None = None,
          measure: Measure | None = None, measure_name: str = "measure") -> TrainResult:
    """Train ``model`` (its ``requires_grad`` parameters, or ``param_groups``, or ``optimizer``'s) on
    ``train_examples`` with ``loss_fn``.

    ``collate(list_of_examples) -> dict of tensors``; ``loss_fn(model, batch) -> scalar loss``.
    ``measure(model) -> float``: the validation value that picks the best weights and drives early stopping
    (minimised or maximised per ``config.measure_mode``); without it, the loss on ``valid_examples``.
    ``initial_eval_loss``: the validation value before training when the caller already measured it
    (skips the duplicate evaluation).  Returns a :class:`TrainResult`; the best (or, without validation, the
    last) weights are in ``out_dir`` — or, with ``config.save_checkpoints=False``, only in ``model``.  With
    ``resume=True`` and a ``checkpoint-last`` in ``out_dir`` training continues where it stopped (same order
    of examples, AdamW moments and scheduler position restored).
    """
    config = config or TrainConfig()
    reasons = list(reasons or [])
    saving = config.save_checkpoints
    if saving and (out_dir is None or io is None):
        raise ValueError("out_dir and io are needed unless config.save_checkpoints is False")
    out = Path(out_dir) if saving else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if not saving:
        reasons.append("no-checkpoint mode: nothing written to disk; best weights kept in memory")
    if not train_examples:
        raise ValueError("no training examples")
    if resume and not saving:
        raise ValueError("resume needs checkpoints (config.save_checkpoints=True)")
    valid_examples = list(valid_examples or [])
    validating = bool(valid_examples) or measure is not None
    mode = config.measure_mode
    name = measure_name if measure is not None else "eval_loss"
    eval_bs = config.eval_batch_size or config.batch_size
    micro_per_epoch = math.ceil(len(train_examples) / config.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    from .distributed import DataParallel

    parallel = DataParallel.current()  # several processes under `accelerate launch` (distributed.py)
    if parallel is not None:
        parallel.broadcast_model(model)
        reasons.append(parallel.describe())
    main = parallel is None or parallel.is_main
    stepper = Stepper(model, collate=collate, loss_fn=loss_fn, config=config, total_steps=total_steps,
                      optimizer=optimizer, param_groups=param_groups, reasons=reasons, parallel=parallel)
    amp = stepper.amp
    best_keeper = _BestKeeper(model, io, out, parallel)

    def better(value, than) -> bool:
        if than is None:
            return True
        return value < than - config.min_delta if mode == "min" else value > than + config.min_delta

    st = {"epoch": 0, "micro": 0, "global_step": 0, "best": None, "initial": None, "bad": 0,
          "history": [], "train_loss": None, "elapsed_before": 0.0, "cpu_before": 0.0, "status": None}
    last = out / LAST_DIR if out is not None else None
    if resume and last is not None and (last / STATE_FILE).is_file():
        saved = load_checkpoint(last, model, io, stepper.optimizer, stepper.scheduler)
        for key in st:
            if key in saved:
                st[key] = saved[key]
        stepper.steps = st["global_step"]
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
        if progress is not None and main:
            progress(ProgressEvent(phase, st["epoch"] + (phase == "train"), config.epochs, st["global_step"],
                                   total_steps, loss, eval_loss, elapsed(), eta(), message))

    def checkpoint(status=None):
        if last is None:
            return
        state = {k: st[k] for k in st if k not in ("elapsed_before", "cpu_before")}
        state.update(status=status, elapsed_before=elapsed(),
                     cpu_before=st["cpu_before"] + time.process_time() - c0, config=asdict(config))
        _on_main(parallel, lambda: save_checkpoint(last, model, io, stepper.optimizer, state, stepper.scheduler))
        emit("checkpoint", f"checkpoint saved to {last}")

    def run_eval(label) -> tuple[float | None, float]:
        """(validation loss or None, validation value: the measure, or that loss)."""
        emit("eval", f"evaluating ({label})")
        loss = evaluate(model, valid_examples, collate, loss_fn, eval_bs, amp, cancel) if valid_examples else None
        if cancel is not None and cancel.is_set():
            raise _Stop("cancelled")
        value = float(measure(model)) if measure is not None else loss
        if cancel is not None and cancel.is_set():
            raise _Stop("cancelled")
        emit("eval", f"validation {name} {value:.4f} ({label})", eval_loss=value)
        return loss, value

    def record(entry: dict, loss, value) -> None:
        entry["eval_loss"] = loss if loss is not None else value
        if measure is not None:
            entry[name] = value
            if loss is None:
                del entry["eval_loss"]

    bar = None
    status = st["status"]
    try:
        if status in ("completed", "early-stopped"):
            raise _Stop(status)
        if validating and initial_eval_loss is not None and st["initial"] is None:
            st["initial"] = initial_eval_loss
            st["history"].append({"epoch": 0, "step": 0, ("eval_loss" if measure is None else name): st["initial"]})
        if validating and config.eval_before and st["initial"] is None:
            loss, st["initial"] = run_eval("before training")
            entry = {"epoch": 0, "step": 0}
            record(entry, loss, st["initial"])
            st["history"].append(entry)
        if st["initial"] is not None and st["best"] is None:
            st["best"] = st["initial"]
            best_keeper.save()
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=st["global_step"], disable=not (config.show_bar and main),
                   desc="training", unit="step", dynamic_ncols=True)
        model.train()
        while st["epoch"] < config.epochs:
            order = _epoch_order(len(train_examples), config.seed, st["epoch"])
            micro_batches = _batches([train_examples[i] for i in order], config.batch_size)
            stepper.optimizer.zero_grad(set_to_none=True)
            # st["micro"] is always at an accumulation-group boundary (the last group may be shorter)
            for start in range(st["micro"], len(micro_batches), config.grad_accum):
                if cancel is not None and cancel.is_set():
                    raise _Stop("cancelled")
                if config.max_seconds is not None and elapsed() >= config.max_seconds:
                    raise _Stop("budget")
                if config.max_steps is not None and st["global_step"] >= config.max_steps:
                    raise _Stop("max-steps")
                st["train_loss"] = stepper.step(micro_batches[start:start + config.grad_accum])
                st["global_step"] += 1
                st["micro"] = min(len(micro_batches), start + config.grad_accum)
                bar.update(1)
                bar.set_postfix(loss=f"{st['train_loss']:.4f}", epoch=st["epoch"] + 1)
                emit("train", loss=st["train_loss"])
            st["epoch"] += 1
            st["micro"] = 0
            entry = {"epoch": st["epoch"], "step": st["global_step"], "train_loss": st["train_loss"]}
            if validating:
                loss, value = run_eval(f"epoch {st['epoch']}")
                record(entry, loss, value)
                if better(value, st["best"]):
                    st["best"], st["bad"] = value, 0
                    best_keeper.save()
                else:
                    st["bad"] += 1
            st["history"].append(entry)
            if validating and st["bad"] >= config.patience and st["epoch"] < config.epochs:
                checkpoint("early-stopped")
                raise _Stop("early-stopped")
            checkpoint("completed" if st["epoch"] >= config.epochs else None)
        status = "completed"
    except _Stop as stop:
        status = stop.status
        if status in ("budget", "max-steps") and validating and st["global_step"] > 0:
            # stopped mid-epoch by a budget: validate what was trained so "best" can include it
            loss, value = run_eval(f"stopped by {status} at step {st['global_step']}")
            entry = {"epoch": st["epoch"] + st["micro"] / max(1, micro_per_epoch),
                     "step": st["global_step"], "train_loss": st["train_loss"]}
            record(entry, loss, value)
            st["history"].append(entry)
            if better(value, st["best"]):
                st["best"] = value
                best_keeper.save()
        if status in ("cancelled", "budget", "max-steps"):
            checkpoint(None)
    finally:
        if bar is not None:
            bar.close()

    # the result: best weights (by the validation value) into OUT, or the last weights without validation
    if validating and st["best"] is not None and best_keeper.restore():
        reasons.append(f"final weights = those with the best validation {name} ({st['best']:.4f})")
    result = TrainResult(status=status, out_dir=str(out) if out is not None else "", epochs_done=st["epoch"],
                         global_step=st["global_step"], initial_eval_loss=st["initial"], best_eval_loss=st["best"],
                         final_train_loss=st["train_loss"], history=st["history"], reasons=reasons,
                         elapsed_s=elapsed(), cpu_s=st["cpu_before"] + time.process_time() - c0,
                         measure_name=name, measure_mode=mode)
    if out is not None:
        def final():
            io.save(model, out)
            (out / LOG_FILE).write_text(json.dumps(asdict(result) | {"config": asdict(config)}, indent=1))
        _on_main(parallel, final)
    emit("done", f"training {status}: {st['global_step']} steps, best validation {name} {st['best']}")
    return result


def remove_checkpoints(out_dir) -> None:
    """Delete the resumable checkpoint and best copy once the caller has what it needs."""
    for name in (LAST_DIR, BEST_DIR):
        shutil.rmtree(Path(out_dir) / name, ignore_errors=True)
