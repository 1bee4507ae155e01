"""MDR's three training stages (paper 000 §3.4) and ``memlab train mdr --stage teacher|sentence|token|all``.

1. **teacher** — the teacher encoder–decoder on responses only: L_teacher = −log p(R | Q, R_TE) (Eq. 1–3).
   The teacher encoder is frozen afterwards.
2. **sentence** — knowledge distillation: the student encoder and the P-/R-Update Memory Nets learn R⁽ᴷ⁾ from
   Q, P and H_P (Eq. 4–12, H_P chosen by the frozen teacher, Eq. 7) with L_sentence = MSE(R⁽ᴷ⁾, R_TE) (Eq. 13).
3. **token** — the decoder (initialised from the teacher decoder) is fine-tuned on Q and the cached distilled
   features R⁽ᴷ⁾ with the adjusted-weight loss L_token (Eq. 14).

Each stage runs on the shared loop (``engine.training.loop``: AdamW, validation loss per epoch, early stopping,
step/time budgets, resumable ``checkpoint-last``, progress bar) and writes ``OUT/<stage>/`` (see
``checkpoints.py``).  Defaults are the paper's (§4.2): lr 1e-4 with linear warm-up, at most 5 epochs per stage,
seed 2022, σ = 0.5.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .config import STAGES, MdrConfig, StageSettings


# ------------------------------------------------------------------------------------------ LoRA / freezing

def _lora_encoder(model, config: MdrConfig, reasons: list[str]):
    """LoRA on a BERT-family (or GPT-2) encoder's attention projections (shared per-architecture table)."""
    from peft import LoraConfig, get_peft_model

    from engine.training.lora import count_parameters, target_modules_for

    targets = target_modules_for(model)
    cfg = LoraConfig(r=config.encoder_lora_r, lora_alpha=int(config.lora_alpha_ratio * config.encoder_lora_r),
                     lora_dropout=config.lora_dropout, target_modules=targets, bias="none")
    peft_model = get_peft_model(model, cfg)
    t, n = count_parameters(peft_model)
    reasons.append(f"encoder LoRA r={config.encoder_lora_r} on {targets}: {t:,} trainable of {n:,}")
    return peft_model


def _lora_decoder(model, config: MdrConfig, reasons: list[str]):
    from engine.training.lora import LoraSettings, attach_lora

    settings = LoraSettings(r=config.decoder_lora_r, alpha=int(config.lora_alpha_ratio * config.decoder_lora_r),
                            dropout=config.lora_dropout, quantize="none")
    return attach_lora(model, "causal", settings, reasons)


def _freeze(module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def _train_all(module) -> None:
    for p in module.parameters():
        p.requires_grad_(True)


# ------------------------------------------------------------------------------------------ stage modules

def _stage_module(stage: str, out: Path, generator, encoder, config: MdrConfig, reasons: list[str]):
    """The module trained in ``stage`` (only that stage's parts require gradients)."""
    import torch
    from torch import nn

    from . import checkpoints as ck
    from .model import MdrStudent, fresh_parts

    torch.manual_seed(config.seed)
    teacher, student, decoder = fresh_parts(generator, encoder, config)
    if stage == "teacher":
        _freeze(teacher.model)
        _freeze(decoder.lm)
        teacher.model = _lora_encoder(teacher.model, config, reasons) if config.encoder_mode == "lora" else teacher.model
        if config.encoder_mode == "full":
            _train_all(teacher.model)
        decoder.lm = _lora_decoder(decoder.lm, config, reasons) if config.decoder_mode == "lora" else decoder.lm
        if config.decoder_mode == "full":
            _train_all(decoder.lm)
        module = nn.Module()
        module.teacher, module.decoder = teacher, decoder
        return module
    if not ck.stage_done(out, "teacher"):
        raise RuntimeError(f"{out}: train the teacher first (memlab train mdr --stage teacher --out {out})")
    teacher.model = ck.attach_part(teacher.model, out / "teacher", "teacher_encoder")
    _freeze(teacher.model)
    teacher.model.eval()
    if stage == "sentence":
        if config.student_init == "teacher":
            student.model = ck.attach_part(student.model, out / "teacher", "teacher_encoder",
                                           trainable=config.encoder_mode == "lora")
            reasons.append("student encoder initialised from the trained teacher encoder")
        elif config.encoder_mode == "lora":
            _freeze(student.model)
            student.model = _lora_encoder(student.model, config, reasons)
        if config.encoder_mode == "full":
            _train_all(student.model)
        side = MdrStudent(teacher, student, config)
        return side
    # token stage: frozen teacher + student side; the decoder starts as the teacher decoder (Eq. 2 → Eq. 14)
    if not ck.stage_done(out, "sentence"):
        raise RuntimeError(f"{out}: train the sentence stage first (memlab train mdr --stage sentence --out {out})")
    student.model = ck.attach_part(student.model, out / "sentence", "student_encoder")
    side = MdrStudent(teacher, student, config)
    ck.load_heads(side, out / "sentence" / ck.HEADS, "sentence")
    _freeze(side)
    side.eval()
    decoder.lm = ck.attach_part(decoder.lm, out / "teacher", "decoder", trainable=config.decoder_mode == "lora")
    if config.decoder_mode == "full":
        _train_all(decoder.lm)
    ck.load_heads(ck.decoder_holder(decoder), out / "teacher" / ck.HEADS, "teacher")
    reasons.append("decoder initialised from the teacher decoder (stage 1)")
    module = nn.Module()
    module.decoder = decoder
    module.side = side  # frozen; its R⁽ᴷ⁾ are cached per example before training
    return module


class StageIO:
    """``engine.training.loop.ModelIO`` for one MDR stage (see ``checkpoints.save_stage``)."""

    def __init__(self, stage: str):
        self.stage = stage

    def save(self, model, directory) -> None:
        from . import checkpoints as ck

        ck.save_stage(model, directory, self.stage)

    def load(self, model, directory) -> None:
        from . import checkpoints as ck

        ck.load_stage_into(model, directory, self.stage)


# ------------------------------------------------------------------------------------------ losses

def _teacher_loss(module, batch):
    """Eq. 1–3: R_TE = Encoder_teacher(R); L_teacher = −log p(R | Q, R_TE)."""
    from .model import weighted_token_loss

    r_te = module.teacher.features(batch["responses"])
    nll, valid, _ = module.decoder.token_nll(r_te, batch["queries"], batch["responses"])
    return weighted_token_loss(nll, valid, None)


def _sentence_loss(side, batch):
    """Eq. 13: MSE(R⁽ᴷ⁾, R_TE) with R⁽ᴷ⁾ from the student side (Eq. 4–12, Fig. 3)."""
    from .model import sentence_loss

    return sentence_loss(side(batch["items"]), side.teacher.cached(batch["responses"]))


def _token_loss_fn(config: MdrConfig):
    def loss(module, batch):
        """Eq. 14 on the cached R⁽ᴷ⁾; weights from the frozen teacher (or 1 for the ablation)."""
        import torch

        from .model import token_weights, weighted_token_loss

        r_k = torch.stack(batch["r_k"]).to(next(module.decoder.parameters()).device)
        nll, valid, targets = module.decoder.token_nll(r_k, batch["queries"], batch["responses"])
        weights = None
        if config.token_weights:
            r_te = module.side.teacher.cached(batch["responses"])
            weights = token_weights(module.side.teacher, module.decoder.tokenizer, targets, r_te, config.sigma)
        return weighted_token_loss(nll, valid, weights)
    return loss


def _collate(examples):
    from .model import StudentInput

    return {"queries": [e.query for e in examples], "responses": [e.response for e in examples],
            "items": [StudentInput(e.query, e.persona, e.partial_history) for e in examples],
            "r_k": [getattr(e, "r_k", None) for e in examples]}


# ------------------------------------------------------------------------------------------ running a stage

@dataclass
class StageReport:
    stage: str
    status: str
    steps: int
    initial_eval_loss: float | None
    best_eval_loss: float | None
    final_train_loss: float | None
    train_examples: int
    valid_examples: int
    elapsed_s: float
    history: list
    curve: list
    reasons: list


def _fill_partial_history(examples, teacher) -> None:
    """Eq. 7 for every example, with the frozen teacher (cached features)."""
    from .model import pair_text, partial_history

    texts = list(dict.fromkeys(t for ex in examples for t in [ex.query] + [pair_text(q, r) for q, r in ex.history]))
    for start in _bar(range(0, len(texts), 256), f"teacher features for {len(texts)} texts"):
        teacher.cached(texts[start:start + 256])  # batched once; the selection below reads the cache
    for ex in examples:
        ex.partial_history, ex.selected = partial_history(ex.history, ex.query, teacher)


def _bar(items, desc):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="ex", dynamic_ncols=True, mininterval=2.0, file=sys.stderr)


def _cache_r_k(examples, side, batch_size: int = 16) -> None:
    """The distilled response features R⁽ᴷ⁾ of every example, computed once (§4.2)."""
    import torch

    from .model import StudentInput

    side.eval()
    with torch.no_grad():
        for start in _bar(range(0, len(examples), batch_size), "caching R(K)"):
            chunk = examples[start:start + batch_size]
            feats = side([StudentInput(e.query, e.persona, e.partial_history) for e in chunk])
            for e, f in zip(chunk, feats):
                e.r_k = f.detach()


def loop_config(settings: StageSettings, seed: int, show_bar: bool = True):
    from engine.training.loop import TrainConfig

    return TrainConfig(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size,
                       grad_accum=settings.grad_accum, patience=settings.patience, max_steps=settings.max_steps,
                       max_seconds=settings.max_seconds, seed=seed, show_bar=show_bar,
                       warmup_ratio=settings.warmup_ratio, schedule=settings.schedule)


def run_stage(stage: str, out, generator, encoder, train_examples, valid_examples, config: MdrConfig,
              settings: StageSettings, *, resume: bool = False, progress=None, cancel=None,
              show_bar: bool = True) -> StageReport:
    """Train one stage into ``out/<stage>``; returns its report (also merged into ``out/mdr.json``)."""
    from engine.training import loop

    from . import checkpoints as ck

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)} (or all)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = ck.read_manifest(out)
    if doc and doc.get("config") and MdrConfig.from_dict(doc["config"]).to_dict() != config.to_dict():
        if stage == "teacher" and not resume:
            pass  # a fresh teacher starts a new checkpoint
        else:
            raise ValueError(f"{out}: its stages were trained with another configuration ({doc['config']}); "
                             "use a new --out, or the same settings")
    ck.update_manifest(out, config=config.to_dict(), generator=generator.name, encoder=encoder.name)
    reasons: list[str] = [f"MDR stage {stage}: generator {generator.name}, encoder {encoder.name}",
                          f"configuration: {config.ablation_name()} (K={config.hops}, sigma={config.sigma})"]
    rng = random.Random(config.seed)
    train_examples = list(train_examples)
    rng.shuffle(train_examples)
    if settings.max_train_examples:
        train_examples = train_examples[:settings.max_train_examples]
    valid_examples = list(valid_examples)[:settings.max_valid_examples or None]
    module = _stage_module(stage, out, generator, encoder, config, reasons)
    if stage in ("sentence", "token"):
        teacher = module.teacher if stage == "sentence" else module.side.teacher
        _fill_partial_history(train_examples + valid_examples, teacher)
    if stage == "token":
        _cache_r_k(train_examples + valid_examples, module.side)
    loss_fn = {"teacher": _teacher_loss, "sentence": _sentence_loss, "token": _token_loss_fn(config)}[stage]
    curve: list[dict] = []
    t0 = time.monotonic()

    def on_progress(ev):
        if ev.phase == "train" and ev.loss is not None:
            curve.append({"step": ev.step, "loss": round(float(ev.loss), 5)})
        if ev.phase == "eval" and ev.eval_loss is not None:
            curve.append({"step": ev.step, "eval_loss": round(float(ev.eval_loss), 5)})
        if progress is not None:
            progress(ev)

    stage_dir = out / stage
    curve_file = stage_dir / "curve.json"
    if resume and curve_file.is_file():
        curve[:0] = json.loads(curve_file.read_text())
    result = loop.train(module, train_examples, valid_examples, collate=_collate, loss_fn=loss_fn,
                        io=StageIO(stage), out_dir=stage_dir, config=loop_config(settings, config.seed, show_bar),
                        progress=on_progress, cancel=cancel, resume=resume, reasons=reasons)
    curve_file.write_text(json.dumps(curve))
    if result.status in ("completed", "early-stopped"):
        loop.remove_checkpoints(stage_dir)
    report = StageReport(stage, result.status, result.global_step, result.initial_eval_loss, result.best_eval_loss,
                         result.final_train_loss, len(train_examples), len(valid_examples),
                         time.monotonic() - t0, result.history, curve, result.reasons)
    summary = {k: v for k, v in asdict(report).items() if k not in ("curve", "reasons")}
    ck.update_manifest(out, stages={stage: summary})
    return report


def split_episodes(episodes, valid_fraction: float, seed: int):
    eps = list(episodes)
    order = list(range(len(eps)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, int(round(len(eps) * valid_fraction))) if len(eps) > 1 else 0
    valid_ids = set(order[:n_valid])
    return [e for i, e in enumerate(eps) if i not in valid_ids], [e for i, e in enumerate(eps) if i in valid_ids]


def plot_curves(out, png) -> Path:
    """Training-loss (per step) and validation-loss curves of every trained stage, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    stages = [s for s in STAGES if (out / s / "curve.json").is_file()]
    if not stages:
        raise FileNotFoundError(f"{out}: no stage has a curve.json yet")
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.4), squeeze=False)
    titles = {"teacher": "stage 1: teacher (Eq. 3)", "sentence": "stage 2: sentence (Eq. 13, MSE)",
              "token": "stage 3: token (Eq. 14)"}
    for ax, stage in zip(axes[0], stages):
        curve = json.loads((out / stage / "curve.json").read_text())
        tr = [(c["step"], c["loss"]) for c in curve if "loss" in c]
        ev = [(c["step"], c["eval_loss"]) for c in curve if "eval_loss" in c]
        if tr:
            ax.plot(*zip(*tr), lw=0.8, alpha=0.6, label="train (per step)")
        if ev:
            ax.plot(*zip(*ev), "o-", color="C3", label="validation")
        ax.set_title(titles[stage], fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


# ------------------------------------------------------------------------------------------ CLI

def register(tsub) -> None:
    """Add ``mdr`` to ``memlab train``'s sub-commands."""
    p = tsub.add_parser("mdr", help="MDR's three stages: teacher | sentence | token | all (paper 000 §3.4)")
    p.add_argument("--stage", choices=STAGES + ("all",), default="all")
    p.add_argument("--data", help="training dialogues: ConvAI2 (Xpersona JSON / ParlAI text) or memlab-episode/1 "
                                  "(default: the generated starter corpus)")
    p.add_argument("--format", default="auto", help="auto | convai2 | memlab | locomo")
    p.add_argument("--valid", help="validation dialogues (default: hold out --valid-fraction of --data)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--episodes", type=int, default=200, help="starter-corpus episodes without --data")
    p.add_argument("--generator", help="decoder LM (default: the embedded SmolLM2-135M-Instruct; a GPT-2 "
                                       "directory or id for the paper's path)")
    p.add_argument("--encoder", help="teacher/student encoder (default: the embedded MiniLM; for the paper's "
                                     "GPT-2 path pass the same GPT-2 as --generator)")
    p.add_argument("--out", help="checkpoint directory (default: <user data>/mdr/<generator>)")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue each stage from its checkpoint-last; "
                                                         "with --stage all, finished stages are skipped")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--plot", help="write the loss curves of the trained stages to this PNG")
    p.add_argument("--ablations", help="comma-separated variants trained after the full model, each in OUT/<variant> "
                                       "sharing its teacher (paper Fig. 4): no-p-update, no-r-update, "
                                       "no-token-weights, sigma=VALUE (e.g. sigma=0.25,sigma=1)")
    g = p.add_argument_group("model (paper defaults; ablation switches)")
    d = MdrConfig()
    g.add_argument("--hops", type=int, default=d.hops, help="K of the Memory Nets (default 3, see config.py)")
    g.add_argument("--sigma", type=float, default=d.sigma, help="σ of the adjusted token weights (paper: 0.5)")
    g.add_argument("--init-std", type=float, default=d.init_std, help="std of P(0), R(0)")
    g.add_argument("--no-p-update", action="store_true")
    g.add_argument("--no-r-update", action="store_true")
    g.add_argument("--no-token-weights", action="store_true")
    g.add_argument("--prefix-tokens", type=int, default=d.prefix_tokens)
    g.add_argument("--encoder-mode", choices=("auto", "lora", "full"), default="auto",
                   help="auto: full fine-tuning on the GPT-2 path (paper), LoRA otherwise (§4.6)")
    g.add_argument("--decoder-mode", choices=("auto", "lora", "full"), default="auto")
    g.add_argument("--encoder-lora-r", type=int, default=d.encoder_lora_r)
    g.add_argument("--decoder-lora-r", type=int, default=d.decoder_lora_r)
    g.add_argument("--student-init", choices=("teacher", "base"), default=d.student_init)
    g.add_argument("--max-query-tokens", type=int, default=d.max_query_tokens)
    g.add_argument("--max-response-tokens", type=int, default=d.max_response_tokens)
    g.add_argument("--seed", type=int, default=d.seed)
    t = p.add_argument_group("loop (per stage; paper: lr 1e-4 with linear warm-up, at most 5 epochs)")
    s = StageSettings()
    t.add_argument("--epochs", type=int, default=s.epochs)
    t.add_argument("--lr", type=float, default=s.lr)
    t.add_argument("--warmup-ratio", type=float, default=s.warmup_ratio, help="share of a stage's steps warming up")
    t.add_argument("--schedule", choices=("linear", "constant"), default=s.schedule,
                   help="after warm-up: linear decay to 0 (default) or constant")
    t.add_argument("--batch-size", type=int, default=s.batch_size)
    t.add_argument("--grad-accum", type=int, default=s.grad_accum)
    t.add_argument("--patience", type=int, default=s.patience)
    t.add_argument("--max-steps", type=int, help="per stage (resumable)")
    t.add_argument("--max-minutes", type=float, help="wall-clock budget per stage (resumable)")
    t.add_argument("--max-train-examples", type=int)
    t.add_argument("--max-valid-examples", type=int, default=200)
    p.set_defaults(func=run_cli)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def config_from_args(args, generator) -> MdrConfig:
    gpt2 = getattr(generator.model.config, "model_type", "") == "gpt2"
    enc = args.encoder_mode if args.encoder_mode != "auto" else ("full" if gpt2 else "lora")
    dec = args.decoder_mode if args.decoder_mode != "auto" else ("full" if gpt2 else "lora")
    return MdrConfig(hops=args.hops, sigma=args.sigma, init_std=args.init_std, p_update=not args.no_p_update,
                     r_update=not args.no_r_update, token_weights=not args.no_token_weights,
                     prefix_tokens=args.prefix_tokens, encoder_mode=enc, decoder_mode=dec,
                     encoder_lora_r=args.encoder_lora_r, decoder_lora_r=args.decoder_lora_r,
                     student_init=args.student_init, max_query_tokens=args.max_query_tokens,
                     max_response_tokens=args.max_response_tokens, seed=args.seed)


def load_examples(args):
    from engine.data.readers import read_any

    from .data import examples_from_episodes

    if args.data:
        episodes = read_any(args.data, args.format)
        origin = args.data
    else:
        from engine.data.corpus import generate_episodes

        episodes = list(generate_episodes(args.episodes, seed=args.seed))
        origin = f"starter corpus ({args.episodes} generated episodes)"
    if args.valid:
        valid_eps = read_any(args.valid, args.format)
        train_eps = episodes
    else:
        train_eps, valid_eps = split_episodes(episodes, args.valid_fraction, args.seed)
        origin += f", {args.valid_fraction:.0%} of the dialogues held out for validation"
    return examples_from_episodes(train_eps), examples_from_episodes(valid_eps), origin


def run_cli(args) -> int:
    from engine.backbones.types import ModelNotFoundError
    from engine.data.errors import DataFormatError

    from .checkpoints import CheckpointError

    try:
        return _run(args)
    except (DataFormatError, ModelNotFoundError, CheckpointError, FileNotFoundError, ValueError, RuntimeError) as e:
        _err(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted; run the same command with --resume to continue from the last checkpoint")
        return 130


def _run(args) -> int:
    from engine.backbones.loading import load_encoder, load_lm

    from . import checkpoints as ck

    generator_name, encoder_name = args.generator, args.encoder
    if generator_name is None:
        from engine.backbones.embedded import check_prepared, default_lm_path

        ok, why = check_prepared()
        if not ok:
            raise RuntimeError(f"the embedded SmolLM2 is not prepared ({why}); run `memlab models prepare` or pass --generator")
        generator_name = str(default_lm_path())
    if encoder_name is None:
        from engine.backbones.embedded import default_encoder_path

        encoder_name = str(default_encoder_path())
    train, valid, origin = load_examples(args)
    _err(f"data: {len(train)} training / {len(valid)} validation examples from {origin}")
    generator = load_lm(generator_name, kind="causal", device=args.device)
    encoder = load_encoder(encoder_name, device=args.device)
    config = config_from_args(args, generator)
    out = Path(args.out) if args.out else ck.default_dir(generator_name)
    settings = StageSettings(epochs=args.epochs, lr=args.lr, warmup_ratio=args.warmup_ratio, schedule=args.schedule,
                             batch_size=args.batch_size, grad_accum=args.grad_accum, patience=args.patience,
                             max_steps=args.max_steps, max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                             max_train_examples=args.max_train_examples, max_valid_examples=args.max_valid_examples)
    stages = STAGES if args.stage == "all" else (args.stage,)
    reports = []
    for stage in stages:
        if args.stage == "all" and args.resume and ck.stage_done(out, stage) and \
                (ck.read_manifest(out) or {}).get("stages", {}).get(stage, {}).get("status") in ("completed", "early-stopped"):
            _err(f"stage {stage}: already trained in {out}, skipped")
            continue
        _err(f"stage {stage} → {out / stage}")
        rep = run_stage(stage, out, generator, encoder, train, valid, config, settings, resume=args.resume,
                        show_bar=not args.no_progress)
        reports.append(rep)
        if not args.json:
            for r in rep.reasons:
                _err(f"  - {r}")
            print(f"stage {stage}: {rep.status}, {rep.steps} steps, {rep.elapsed_s:.0f} s; validation loss "
                  f"{_fmt(rep.initial_eval_loss)} → best {_fmt(rep.best_eval_loss)}")
        if rep.status not in ("completed", "early-stopped"):
            print(f"stage {stage} stopped by its budget ({rep.status}); run again with --resume to continue")
            if args.stage == "all" and rep.status == "cancelled":
                break
    if args.ablations:
        reports += _run_ablations(args, out, generator, encoder, train, valid, config, settings)
    if args.plot:
        print(f"loss curves: {plot_curves(out, args.plot)}")
    if args.json:
        print(json.dumps([{k: v for k, v in asdict(r).items() if k != "curve"} for r in reports], indent=1, default=str))
    else:
        print(f"checkpoint: {out}" + ("  (complete: memlab chat --agent mdr)" if ck.is_complete(out) else ""))
    return 0


ABLATIONS = {"no-p-update": {"p_update": False}, "no-r-update": {"r_update": False},
             "no-token-weights": {"token_weights": False}}


def ablation_config(config: MdrConfig, variant: str) -> MdrConfig:
    """The full model's configuration with one ablation switch (paper Fig. 4)."""
    variant = variant.strip()
    if variant in ABLATIONS:
        return replace(config, **ABLATIONS[variant])
    if variant.startswith("sigma="):
        try:
            return replace(config, sigma=float(variant.split("=", 1)[1]))
        except ValueError:
            pass
    raise ValueError(f"unknown ablation {variant!r}; choose from {', '.join(ABLATIONS)}, sigma=VALUE")


def _run_ablations(args, out: Path, generator, encoder, train, valid, config, settings) -> list:
    """Each variant in ``out/<variant>``: the full model's teacher (stage 1 does not depend on the switches) copied,
    then the sentence and token stages trained with the variant's switches; a table of validation losses."""
    import shutil

    from . import checkpoints as ck

    if not ck.stage_done(out, "teacher"):
        raise RuntimeError(f"{out}: the ablations reuse the full model's teacher; train it first (--stage teacher)")
    variants = [v.strip() for v in args.ablations.split(",") if v.strip()]
    configs = {v: ablation_config(config, v) for v in variants}  # all names checked before any training
    reports, rows = [], []
    for variant, cfg in configs.items():
        vdir = out / variant
        if not ck.stage_done(vdir, "teacher"):
            shutil.copytree(out / "teacher", vdir / "teacher", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("checkpoint-last", "best"))
            ck.update_manifest(vdir, config=cfg.to_dict(), generator=generator.name, encoder=encoder.name,
                               stages={"teacher": (ck.read_manifest(out) or {}).get("stages", {}).get("teacher", {})})
        for stage in ("sentence", "token"):
            _err(f"ablation {variant}: stage {stage} → {vdir / stage}")
            rep = run_stage(stage, vdir, generator, encoder, train, valid, cfg, settings, resume=args.resume,
                            show_bar=not args.no_progress)
            reports.append(rep)
            rows.append((variant, stage, rep.initial_eval_loss, rep.best_eval_loss, rep.status))
    print("ablation            stage     validation loss (before → best)   status")
    for variant, stage, a, b, status in rows:
        print(f"{variant:<19} {stage:<9} {_fmt(a)} → {_fmt(b)}                  {status}")
    print(f"evaluate a variant: memlab eval compare --systems mdr ... with the mdr option checkpoint={out}/<variant>")
    return reports


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"
