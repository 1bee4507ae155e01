"""``memlab train emma-dialogue`` and ``memlab train emma-retriever`` (EMMA paper §4, Appendix E).

Both read ``memlab-episode/1`` files (``--train``, optional ``--valid``; without ``--valid`` a seeded share of
the training episodes is held out) or, without ``--train``, generate the project's starter corpus.  Defaults
are the paper's (App. E.1: lr 1e-3, LoRA r=32/alpha=32/dropout 0.1, max input 1024, target 64, batch 52 as
4 x 13 accumulation, 3 epochs with early stopping; App. E.2: lr 1e-4, batch 90, margin 0.2, context 512,
memory 32, 20 epochs with early stopping).  Outputs go to the user data dir unless ``--out`` is given.
"""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("train", help="train EMMA's dialogue module or retriever")
    tsub = p.add_subparsers(dest="train_command", required=True)

    d = tsub.add_parser("emma-dialogue", help="(Q)LoRA fine-tuning of EMMA's dialogue module (3 tasks)")
    _data_args(d)
    d.add_argument("--backbone", help="generator: HF id or directory (default: the embedded SmolLM2-135M-Instruct)")
    d.add_argument("--out", help="adapter directory (default: <user data>/adapters/emma-<backbone>)")
    _loop_args(d, epochs=3, lr=1e-3, batch_size=4, grad_accum=13, patience=1)
    d.add_argument("--max-input", type=int, default=1024)
    d.add_argument("--max-target", type=int, default=64)
    d.add_argument("--lora-r", type=int, default=32)
    d.add_argument("--lora-alpha", type=int, default=32)
    d.add_argument("--lora-dropout", type=float, default=0.1)
    d.add_argument("--lora-targets", help="comma-separated module names (default: per architecture)")
    d.add_argument("--quantize", choices=("auto", "4bit", "none"), default="auto",
                   help="auto: 4-bit NF4 QLoRA when CUDA is present, plain LoRA otherwise")
    d.add_argument("--tasks", default="generation,summarize,link")
    d.add_argument("--negatives-per-positive", type=float, default=1.0)
    d.add_argument("--max-train-examples", type=int)
    d.add_argument("--max-valid-examples", type=int)
    d.add_argument("--link-eval-pairs", type=int, help="held-out link pairs for the accuracy (default: all)")
    d.set_defaults(func=run_dialogue)

    r = tsub.add_parser("emma-retriever", help="triplet-loss training of EMMA's dual-encoder retriever")
    _data_args(r)
    r.add_argument("--encoder", help="base encoder: HF id or directory (default: the embedded all-MiniLM-L6-v2)")
    r.add_argument("--pooling", choices=("mean", "cls"), help="default: the encoder's own")
    r.add_argument("--out", help="output directory (default: <user data>/retrievers/emma-<encoder>)")
    _loop_args(r, epochs=20, lr=1e-4, batch_size=90, grad_accum=1, patience=2)
    r.add_argument("--context-max", type=int, default=512)
    r.add_argument("--memory-max", type=int, default=32)
    r.add_argument("--margin", type=float, default=0.2)
    r.add_argument("--hard-fraction", type=float, default=0.5, help="share of negatives from the same episode")
    r.add_argument("--in-batch-negatives", action="store_true")
    r.add_argument("--max-train-triples", type=int)
    r.set_defaults(func=run_retriever)

    from .consistency import register as register_consistency

    register_consistency(tsub)  # memlab train consistency (the metrics' classifier, not a system)

    from engine.systems.mdr.train import register as register_mdr  # memlab train mdr (paper 000 §3.4)

    register_mdr(tsub)


def _data_args(p) -> None:
    p.add_argument("--train", help="memlab-episode/1 file (default: generate the starter corpus)")
    p.add_argument("--valid", help="memlab-episode/1 file (default: hold out --valid-fraction of the training episodes)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--episodes", type=int, default=200, help="starter-corpus episodes to generate without --train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _loop_args(p, *, epochs, lr, batch_size, grad_accum, patience) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--grad-accum", type=int, default=grad_accum)
    p.add_argument("--patience", type=int, default=patience, help="early stopping: evaluations without improvement")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (resumable)")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget (stops with a resumable checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_data(args):
    """(train episodes, valid episodes, where they came from) for the data arguments."""
    from engine.data.episode_format import read_episodes

    if args.train:
        train = list(read_episodes(args.train))
        origin = args.train
    else:
        from engine.data.corpus import generate_episodes

        train = list(generate_episodes(args.episodes, seed=args.seed))
        origin = f"starter corpus ({args.episodes} generated episodes, seed {args.seed})"
    if args.valid:
        valid = list(read_episodes(args.valid))
    else:
        from engine.data.corpus import split

        train, valid = split(train, args.valid_fraction, seed=args.seed)
        origin += f", {args.valid_fraction:.0%} held out for validation"
    return list(train), list(valid), origin


def _loop_config(args):
    from .loop import TrainConfig

    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
                       patience=args.patience, max_steps=args.max_steps, seed=args.seed,
                       max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                       show_bar=not args.no_progress)


def _guard(run):
    def wrapped(args) -> int:
        from engine.backbones.types import ModelNotFoundError
        from engine.data.errors import DataFormatError

        try:
            return run(args)
        except (DataFormatError, ModelNotFoundError, FileNotFoundError, ValueError, RuntimeError) as e:
            _err(f"error: {e}")
            return 2
        except KeyboardInterrupt:
            _err("interrupted; run again with --resume to continue from the last checkpoint")
            return 130
    return wrapped


def _print_result(report: dict, args, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return
    res = report["result"]
    for r in report["reasons"]:
        _err(f"  - {r}")
    print(f"training {res['status']}: {res['epochs_done']} epoch(s), {res['global_step']} steps, "
          f"{res['elapsed_s']:.0f} s wall, {res['cpu_s']:.0f} s CPU")
    for line in lines:
        print(line)
    if res["status"] in ("cancelled", "budget", "max-steps"):
        print("stopped early by the budget; run the same command with --resume to continue")


@_guard
def run_dialogue(args) -> int:
    from .emma_dialogue import DialogueTrainSettings, train_dialogue
    from .lora import LoraSettings
    from .paths import default_adapter_dir

    train, valid, origin = load_data(args)
    _err(f"data: {len(train)} training / {len(valid)} validation episodes from {origin}")
    backbone = args.backbone
    if backbone is None:
        from engine.backbones.embedded import check_prepared, default_lm_path

        ok, why = check_prepared()
        if not ok:
            _err(f"error: the embedded SmolLM2 is not prepared ({why}); run `memlab models prepare` or pass --backbone")
            return 2
        backbone = str(default_lm_path())
    out = args.out or str(default_adapter_dir(backbone))
    lora = LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout, quantize=args.quantize,
                        target_modules=[t.strip() for t in args.lora_targets.split(",")] if args.lora_targets else None)
    settings = DialogueTrainSettings(backbone=backbone, max_input=args.max_input, max_target=args.max_target,
                                     tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
                                     negatives_per_positive=args.negatives_per_positive,
                                     max_train_examples=args.max_train_examples,
                                     max_valid_examples=args.max_valid_examples,
                                     link_eval_pairs=args.link_eval_pairs, device=args.device,
                                     seed=args.seed, lora=lora)
    _err(f"training EMMA's dialogue module on {backbone} → {out}")
    report = train_dialogue(train, valid, out, settings=settings, loop_config=_loop_config(args),
                            resume=args.resume).to_dict()
    lines = [f"adapter: {out}"]
    b, a = report["before"], report["after"]
    for task, loss in (b.get("loss") or {}).items():
        lines.append(f"validation loss {task}: {loss:.4f} → {a['loss'][task]:.4f}")
    if b.get("link_accuracy") is not None:
        lines.append(f"link-label accuracy on {b['link_pairs']} held-out pairs: "
                     f"{b['link_accuracy']:.3f} → {a['link_accuracy']:.3f}")
    lines.append(f"use it: memlab chat --agent emma --lm {backbone} --adapter {out}")
    _print_result(report, args, lines)
    return 0


@_guard
def run_retriever(args) -> int:
    from .emma_retriever import CHECKPOINT_NAME, RetrieverTrainSettings, train_retriever
    from .paths import default_retriever_dir

    train, valid, origin = load_data(args)
    _err(f"data: {len(train)} training / {len(valid)} validation episodes from {origin}")
    encoder = args.encoder
    if encoder is None:
        from engine.backbones.embedded import default_encoder_path

        encoder = str(default_encoder_path())
    out = args.out or str(default_retriever_dir(encoder))
    settings = RetrieverTrainSettings(encoder=encoder, pooling=args.pooling, context_max=args.context_max,
                                      memory_max=args.memory_max, margin=args.margin,
                                      hard_fraction=args.hard_fraction, in_batch_negatives=args.in_batch_negatives,
                                      max_train_triples=args.max_train_triples, device=args.device, seed=args.seed)
    _err(f"training EMMA's retriever from {encoder} → {out}/{CHECKPOINT_NAME}")
    report = train_retriever(train, valid, out, settings=settings, loop_config=_loop_config(args),
                             resume=args.resume).to_dict()
    b, a = report["before"], report["after"]
    lines = [f"retriever: {report['checkpoint']}",
             f"held-out recall@1: {b['recall@1']} → {a['recall@1']}; recall@5: {b['recall@5']} → {a['recall@5']} "
             f"({a['queries']} queries)",
             f"use it: memlab chat --agent emma --encoder {encoder} --retriever {report['checkpoint']}"]
    _print_result(report, args, lines)
    return 0
