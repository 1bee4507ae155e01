"""``memlab selfplay``: four agent instances talk to each other (EMMA paper §5.3).

    memlab selfplay --seeds starter_test.json --episodes 10 --out selfplay.json
    memlab study import study.db selfplay.json --campaign table4 --preset model

Seeds are MiSC-shaped episodes (a main speaker and three partners); ``--episodes N`` of them are
drawn at random (``--seed``). Each instance gets its speaker's name and job/relationship and its own
memory; only the first utterance of the first session comes from the seed; every session has at
most ``--max-turns`` turns. The output (``memlab-episode/1``) holds the main speaker's memories,
links and tags plus every instance's memory snapshot; an interrupted run continues at the next
episode when run again with the same arguments.
"""

from __future__ import annotations

import argparse
import random
import sys
import time


def register(sub) -> None:
    p = sub.add_parser("selfplay", help="self-play episodes by four agent instances (EMMA §5.3)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from engine.systems import registry

    first = registry.names()[0] if registry.names() else None
    p.add_argument("--system", default=first, choices=registry.names(),
                   help="system playing every seat (default: %(default)s, the first in the registry's order)")
    p.add_argument("--partner-system", choices=registry.names(),
                   help="system playing the three partner seats (default: --system)")
    p.add_argument("--seeds", required=True, help="seed episodes (memlab-episode/1, or any importable format)")
    p.add_argument("--format", default="auto", help="seed file format: auto (default), memlab, convai2, locomo")
    p.add_argument("--episodes", type=int, default=10, help="episodes to play (seeds drawn at random; default 10)")
    p.add_argument("--out", required=True, help="output file (memlab-episode/1 .json); an existing one is resumed")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing seeds and for sampling (default 0)")
    p.add_argument("--sessions", type=int, default=6, help="sessions per episode (default 6, as MiSC)")
    p.add_argument("--max-turns", type=int, default=8, help="turns per session at most (default 8, §5.3)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="reply length limit in tokens (default 40)")
    p.add_argument("--lm", help="generator: HF id or directory (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--encoder", help="sentence encoder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--adapter", default="auto", help="generator adapter: auto (default), none, or a directory")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--study", help="then import the episodes into this study database ...")
    p.add_argument("--campaign", help="... as a new campaign with the model preset (Humanness, Engagingness, "
                                      "Memorability; EMMA §5.3 Table 4) of this name")
    from engine.backbones.server import add_server_args

    add_server_args(p)
    p.set_defaults(func=run)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def choose_seeds(episodes, n: int, seed: int, path: str):
    """``n`` eligible seed episodes drawn at random (EMMA §5.3: "we randomly extract ... from the test split")."""
    from engine.selfplay.protocol import INSTANCES

    eligible = [e for e in episodes if len(e.partners) == INSTANCES - 1 and e.sessions and e.sessions[0].turns]
    if len(eligible) < n:
        raise ValueError(f"{path}: {len(eligible)} of {len(episodes)} episodes can seed self-play (a main speaker, "
                         f"{INSTANCES - 1} partners and a first utterance); --episodes {n} needs {n}")
    return random.Random(seed).sample(eligible, n)


def _reseed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def run(args) -> int:
    from engine.backbones.types import ModelNotFoundError
    from engine.data.errors import DataFormatError
    from engine.data.readers import read_any
    from engine.selfplay.factory import SeatFactory
    from engine.selfplay.protocol import SeedError, plan_from_seed
    from engine.selfplay.runner import CannotOpen, run_selfplay
    from engine.systems.registry import RegistryError

    if args.study and not args.campaign:
        _err("error: --study needs --campaign NAME (the model-quality campaign to create)")
        return 2
    if args.episodes < 1:
        _err("error: --episodes must be at least 1")
        return 2
    try:
        seeds = choose_seeds(read_any(args.seeds, args.format), args.episodes, args.seed, args.seeds)
        plans = [plan_from_seed(e, sessions=args.sessions, max_turns=args.max_turns) for e in seeds]
    except (DataFormatError, SeedError, ValueError, OSError) as e:
        _err(f"error: {e}")
        return 2
    partner_system = args.partner_system or args.system
    try:
        factory = SeatFactory.from_args(args, main_system=args.system, partner_system=partner_system, log=_err)
    except (ModelNotFoundError, RegistryError, ValueError, KeyError) as e:
        _err(f"error: {e}")
        return 1
    if getattr(args, "generator_url", None):
        from engine.backbones.server import ServerError

        try:
            workers = factory.workers  # connects now: a wrong URL fails before the first episode
        except (ModelNotFoundError, ServerError, ValueError) as e:
            _err(f"error: {e}")
            return 1
        _err(f"self-play: {workers} episodes at a time (requests batched on the generator server)")
    else:
        workers = 1

    from tqdm import tqdm

    total = len(plans) * args.sessions * args.max_turns
    bar = tqdm(total=total, unit="turn", desc="self-play", file=sys.stderr, dynamic_ncols=True)

    def progress(stage, done, _total):
        bar.n = done
        bar.set_postfix_str(stage, refresh=False)
        bar.refresh()

    def on_episode(ep, n, count):
        t = ep.meta["selfplay"]["timings"]
        bar.write(f"episode {n + 1}/{count} {ep.id}: {t['episode_s']:.0f} s, {t['turns']} generated turns "
                  f"({t['turn_mean_s']} s each), {len(ep.memories)} main-speaker memories, {len(ep.links)} links")

    def seats(plan):
        return {plan.main.name: args.system, **{p.name: partner_system for p in plan.partners}}

    t0 = time.perf_counter()
    try:
        episodes = run_selfplay(plans, factory, args.out, seats=seats, seed=args.seed, reseed=_reseed,
                                on_episode=on_episode, progress=progress, workers=workers)
    except CannotOpen as e:
        bar.close()
        _err(f"error: {e}")
        return 1
    except DataFormatError as e:
        bar.close()
        _err(f"error: {e}")
        return 2
    bar.close()
    print(f"wrote {len(episodes)} self-play episodes to {args.out} in {time.perf_counter() - t0:.0f} s "
          f"({args.system} main speaker, {partner_system} partners)")
    if args.study:
        return import_into_study(args)
    return 0


def import_into_study(args) -> int:
    """``--study``/``--campaign``: import the file and create the model-quality campaign (the annotation
    side's API, reached through ``args.study_sink`` which the ``memlab`` entry point provides)."""
    sink = getattr(args, "study_sink", None)
    if sink is None:
        _err(f"error: --study needs MemLab's annotation part (memlab[all]); import {args.out} with "
             "`memlab study import` instead")
        return 1
    try:
        result, camp = sink.import_selfplay(args.study, args.out, args.campaign)
    except ValueError as e:  # StudyError and DataFormatError are ValueErrors with a located message
        _err(f"error: {e}")
        return 1
    print(f"imported {result.episodes} episodes into {args.study}; campaign {camp.name!r} ({camp.preset}): "
          f"{camp.n_items} items, criteria {', '.join(c.name for c in camp.criteria)}")
    return 0
