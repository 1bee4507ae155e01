"""Argument groups and report printing shared by every ``memlab train <name>`` sub-command (each system
registers its own in ``engine/systems/<name>/train.py``; see docs/architecture.md, "The system registry").

``data_args``: ``--train``/``--valid`` ``memlab-episode/1`` files or the generated starter corpus;
``loop_args``: the shared loop's settings (``engine.training.loop.TrainConfig``); ``guard`` turns bad input
into one ``error:`` line and exit code 2, and Ctrl-C into a resumable stop.
"""

from __future__ import annotations

import json
import sys


def data_args(p) -> None:
    p.add_argument("--train", help="memlab-episode/1 file (default: generate the starter corpus)")
    p.add_argument("--valid", help="memlab-episode/1 file (default: hold out --valid-fraction of the training episodes)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--episodes", type=int, default=200, help="starter-corpus episodes to generate without --train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def loop_args(p, *, epochs, lr, batch_size, grad_accum, patience) -> None:
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--grad-accum", type=int, default=grad_accum)
    p.add_argument("--patience", type=int, default=patience, help="early stopping: evaluations without improvement")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (resumable)")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget (stops with a resumable checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def err(msg: str) -> None:
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


def loop_config(args):
    from engine.training.loop import TrainConfig

    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
                       patience=args.patience, max_steps=args.max_steps, seed=args.seed,
                       max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                       show_bar=not args.no_progress)


def guard(run):
    def wrapped(args) -> int:
        from engine.backbones.types import ModelNotFoundError
        from engine.data.errors import DataFormatError

        try:
            return run(args)
        except (DataFormatError, ModelNotFoundError, FileNotFoundError, ValueError, RuntimeError) as e:
            err(f"error: {e}")
            return 2
        except KeyboardInterrupt:
            err("interrupted; run again with --resume to continue from the last checkpoint")
            return 130
    return wrapped


def print_result(report: dict, args, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return
    res = report["result"]
    for r in report["reasons"]:
        err(f"  - {r}")
    print(f"training {res['status']}: {res['epochs_done']} epoch(s), {res['global_step']} steps, "
          f"{res['elapsed_s']:.0f} s wall, {res['cpu_s']:.0f} s CPU")
    for line in lines:
        print(line)
    if res["status"] in ("cancelled", "budget", "max-steps"):
        print("stopped early by the budget; run the same command with --resume to continue")


