"""``memlab train milp ...``: the MiLP pipeline for one user or many (§2.2-§2.3, §4.4).

* ``search`` — BO over θ on one user's history (and random search at the same budget on the same seeds),
  a resumable search file, the Pareto front, the plot (:mod:`.search`).
* ``instruct`` — the instruction-tuning adapter (§2.3), trained on instruction-following examples built
  from the training users' histories (user-oriented split, §3.4).
* ``ablate`` — the paper's Table 5 in one command: full MiLP vs. no search (LoRA on all FFN layers) vs. no
  instruction tuning vs. no injection (instruction tuning only), on held-out users.

Users come from a MaLP dialogues file (``--data``, :mod:`engine.data.malp`) or any episode file.  Every
output goes where ``--out`` says.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .config import SearchSettings, SearchSpace, Theta, TrainSettings

DEFAULT_DATA = "../shared/datasets/malp/medical_dialogues.json"


# -- one user's data -------------------------------------------------------------------------------

class UserTask:
    """A user's history (session 0..k-1 → memory examples) and held-out replies (last session → the
    validation set of the search: cross-entropy examples + the first ``n_gen`` replies generated)."""

    def __init__(self, lm, episode, settings: TrainSettings, *, window: int = 2, max_memory_examples: int | None = None,
                 n_gen: int = 2):
        from . import train_memory as memory

        self.episode = episode
        self.main = episode.main.name
        self.partner = episode.sessions[-1].partner.name
        self.job = episode.main.job
        self.history = [(t.speaker, t.text) for s in episode.sessions[:-1] for t in s.turns]
        last = [(t.speaker, t.text) for t in episode.sessions[-1].turns]
        held = [ex for ex in memory.exchanges(self.history + last, self.main) if len(ex.context) >= len(self.history)]
        for ex in held:  # the current session only, as every system sees it
            ex.context = ex.context[len(self.history):]
        self.held_out = held
        self.memory_examples = memory.memory_examples(lm, self.history, settings, window=window)
        if max_memory_examples:
            self.memory_examples = self.memory_examples[:max_memory_examples]
        self.valid_examples = memory.response_examples(lm, held, self.main, self.partner, settings, self.job)
        self.gen_items = held[:n_gen]
        self.history_exchanges = memory.exchanges(self.history, self.main)


def read_users(path: str, problems: list | None = None):
    from engine.data.readers import read_any

    return read_any(path, problems=problems if problems is not None else [])


def pick_user(episodes, user: str | None):
    if user is None:
        return episodes[0]
    for ep in episodes:
        if ep.id == user or (ep.partners and ep.partners[0].name == user):
            return ep
    if user.isdigit() and int(user) < len(episodes):
        return episodes[int(user)]
    raise SystemExit(f"no user {user!r} in the data (e.g. {episodes[0].id})")


def load_backbone(name: str | None):
    from engine.backbones.embedded import default_lm_path
    from engine.backbones.loading import load_lm

    lm = load_lm(name or str(default_lm_path()), device="cpu" if _cpu() else None)
    return lm


def _cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def cpu_train_settings(args) -> TrainSettings:
    return TrainSettings(lr=args.lr, warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay,
                         batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps,
                         max_input_tokens=args.max_input, max_target_tokens=args.max_target, seed=args.seed)


# -- search ----------------------------------------------------------------------------------------

def space_for(args, num_layers: int) -> SearchSpace:
    n_lo, n_hi = (int(v) for v in args.n_range.split(","))
    ranks = tuple(int(v) for v in args.ranks.split(","))
    return SearchSpace(num_layers, (n_lo, n_hi), ranks, search_layers=not args.no_layer_search)


def cmd_search(args) -> int:
    from . import search
    from . import train_memory as memory
    from .train_memory import num_layers

    lm = load_backbone(args.backbone)
    settings = cpu_train_settings(args)
    problems: list = []
    episodes = read_users(args.data, problems)
    ep = pick_user(episodes, args.user)
    task = UserTask(lm, ep, settings, max_memory_examples=args.max_memory_examples, n_gen=args.valid_generations)
    space = space_for(args, num_layers(lm.model))
    sset = SearchSettings(trials=args.trials, initial=args.initial, max_seconds=args.budget_s, seed=args.seed,
                          surrogate=args.surrogate, acquisition=args.acquisition,
                          valid_generations=args.valid_generations, max_new_tokens=args.max_new_tokens)
    meta = {"user": ep.id, "backbone": lm.name, "device": lm.plan.summary(),
            "train": asdict(settings), "memory_examples": len(task.memory_examples),
            "valid_examples": len(task.valid_examples), "generated": len(task.gen_items),
            "skipped_records": len(problems)}
    out = Path(args.out)
    sf = search.SearchFile(out / "search.jsonl", space, sset, meta)
    print(json.dumps({"event": "start", **meta, "space": space.to_dict(), "done_trials": len(sf.trials)}), flush=True)
    if sset.surrogate == "nuts":
        ok, why = search.nuts_available()
        print(json.dumps({"event": "surrogate", "nuts": ok, "reason": why}), flush=True)

    def evaluate(theta: Theta):
        return memory.run_trial(lm, theta, task.memory_examples, task.valid_examples, task.gen_items,
                                task.main, task.partner, settings, max_new_tokens=sset.max_new_tokens)

    search.run(space, sset, evaluate, sf, progress=lambda m: print(m, flush=True))
    s = search.summary(sf)
    (out / "summary.json").write_text(json.dumps(s, indent=1))
    search.plot(sf, out / "search.png", f"MiLP search on MaLP user {ep.id} — {Path(lm.name).name}, {len(task.memory_examples)} "
                f"history windows, {len(task.valid_examples)} held-out replies")
    if args.plot:
        search.plot(sf, args.plot, f"MiLP search on MaLP user {ep.id} — {Path(lm.name).name}")
    if s.get("methods", {}).get("bo"):
        (out / "best_theta.json").write_text(json.dumps(search.best_theta(sf).to_dict()))
    print(json.dumps({"event": "done", **{k: v for k, v in s.items() if k != "methods"},
                      "methods": {k: {kk: vv for kk, vv in v.items() if kk != "pareto"}
                                  for k, v in s.get("methods", {}).items()}}), flush=True)
    return 0


# -- instruction tuning (§2.3) -------------------------------------------------------------------------

def instruction_examples(lm, episodes, settings: TrainSettings, limit: int | None = None) -> list[dict]:
    """(context → reply) chat examples from the users' histories: the main speaker's replies, each with the
    turns before it in its session (§2.3 "instruction-following examples ... with respect to the user
    historical content")."""
    from . import train_memory as memory

    items = []
    for ep in episodes:
        for s in ep.sessions[:-1]:
            turns = [(t.speaker, t.text) for t in s.turns]
            for ex in memory.exchanges(turns, ep.main.name):
                items.append((ep, ex))
    if limit:
        import random

        random.Random(settings.seed).shuffle(items)
        items = items[:limit]
    return [memory.response_examples(lm, [ex], ep.main.name, ep.partners[0].name, settings, ep.main.job)[0]
            for ep, ex in items]


def cmd_instruct(args) -> int:
    """Train the instruction adapter on the training users (user-oriented split), validate on the valid users."""
    from engine.training import encoding
    from engine.training.lora import LoraSettings, attach_lora
    from engine.training.loop import PeftAdapterIO, TrainConfig, train

    from .model import INSTRUCT

    lm = load_backbone(args.backbone)
    settings = cpu_train_settings(args)
    episodes = read_users(args.data)
    train_eps = [e for e in episodes if e.meta.get("split", "train") == "train"]
    valid_eps = [e for e in episodes if e.meta.get("split") == "valid"]
    tr = instruction_examples(lm, train_eps, settings, args.max_examples)
    va = instruction_examples(lm, valid_eps, settings, args.max_valid)
    reasons: list[str] = []
    import torch

    torch.manual_seed(args.seed)
    lm.model = attach_lora(lm.model, lm.kind, LoraSettings(r=args.lora_r, alpha=args.lora_r * 2, dropout=0.05,
                                                           quantize="none"), reasons, adapter_name=INSTRUCT,
                           targets="attention")
    pad = encoding.pad_id(lm.tokenizer)
    cfg = TrainConfig(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size,
                      weight_decay=settings.weight_decay, warmup_ratio=settings.warmup_ratio,
                      max_steps=settings.max_steps, max_seconds=args.budget_s, seed=settings.seed, patience=2,
                      show_bar=False)
    print(json.dumps({"event": "start", "train_users": len(train_eps), "valid_users": len(valid_eps),
                      "train_examples": len(tr), "valid_examples": len(va), "reasons": reasons}), flush=True)

    def progress(ev):
        if ev.phase in ("train", "eval", "done"):
            print(json.dumps({"phase": ev.phase, "step": ev.step, "of": ev.total_steps, "loss": ev.loss,
                              "eval_loss": ev.eval_loss, "s": round(ev.elapsed_s)}), flush=True)

    res = train(lm.model, tr, va, collate=lambda b: encoding.collate(b, lm.kind, pad), loss_fn=encoding.lm_loss,
                io=PeftAdapterIO(), out_dir=args.out, config=cfg, progress=progress, reasons=reasons)
    print(json.dumps({"event": "done", "status": res.status, "steps": res.global_step,
                      "initial_valid_loss": res.initial_eval_loss, "best_valid_loss": res.best_eval_loss,
                      "seconds": round(res.elapsed_s)}), flush=True)
    return 0


# -- Table 5: component ablation ----------------------------------------------------------------------

VARIANTS = ("full", "no-search", "no-instruct", "no-injection")


def cmd_ablate(args) -> int:
    """§4.4 / Table 5 on held-out users: full MiLP, no search (all FFN layers), no instruction tuning,
    no injection (instruction tuning only).  ROUGE-1, ROUGE-L, Persona-F1 of greedy replies."""
    from engine.metrics.overlap import rouge1, rougeL
    from engine.metrics.persona_f1 import persona_f1_items

    from . import train_memory as memory
    from .model import AdapterBank, adapter_key
    from .paths import shipped_instruct_dir

    lm = load_backbone(args.backbone)
    settings = cpu_train_settings(args)
    theta = Theta.from_dict(json.loads(Path(args.theta).read_text()))
    all_layers = Theta.all_layers(len(theta.alpha), theta.n, theta.r)
    episodes = [e for e in read_users(args.data) if e.meta.get("split", "test") == "test"][:args.users]
    instruct = Path(args.instruct) if args.instruct else shipped_instruct_dir(lm.name)
    bank = AdapterBank(lm, instruct)
    rows = {v: {"hyp": [], "ref": [], "content": []} for v in VARIANTS}
    t0 = time.monotonic()
    for ui, ep in enumerate(episodes):
        task = UserTask(lm, ep, settings, n_gen=args.replies)
        content = [t for s, t in task.history if s != task.main]
        keys = {}
        for label, th in (("searched", theta), ("all-layers", all_layers)):
            key = adapter_key(f"{ep.id}-{label}")
            memory.train_partner(bank, key, th, task.history, settings)
            keys[label] = key
        plan = {"full": (True, keys["searched"]), "no-search": (True, keys["all-layers"]),
                "no-instruct": (False, keys["searched"]), "no-injection": (True, None)}
        for variant, (with_instruct, key) in plan.items():
            saved = bank.instruct
            bank.instruct = saved if with_instruct else None
            with bank.active(key):
                replies = memory.greedy_replies(lm, task.gen_items, task.main, task.partner, args.max_new_tokens, task.job)
            bank.instruct = saved
            rows[variant]["hyp"] += replies
            rows[variant]["ref"] += [ex.reply for ex in task.gen_items]
            rows[variant]["content"] += [content] * len(replies)
        print(json.dumps({"event": "user", "user": ep.id, "done": ui + 1, "of": len(episodes),
                          "s": round(time.monotonic() - t0)}), flush=True)
    table = {}
    for v, r in rows.items():
        if r["hyp"]:
            pf1 = persona_f1_items(r["hyp"], r["content"])
            table[v] = {"rouge1": 100 * rouge1(r["hyp"], r["ref"]), "rougeL": 100 * rougeL(r["hyp"], r["ref"]),
                        "persona_f1": sum(pf1) / len(pf1), "n": len(r["hyp"])}
    out = {"users": [e.id for e in episodes], "instruct_adapter": str(instruct) if instruct else None,
           "theta": theta.describe(), "table": table, "seconds": round(time.monotonic() - t0),
           "examples": {v: list(zip(rows[v]["hyp"][:2], rows[v]["ref"][:2])) for v in VARIANTS}}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "table5.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out), flush=True)
    return 0


# -- registration ------------------------------------------------------------------------------------

def _common(p) -> None:
    p.add_argument("--data", default=DEFAULT_DATA, help="MaLP dialogues file or any episode file")
    p.add_argument("--backbone", help="generator: HF id or directory (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (§3.4: 5e-4)")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="linear warm-up share of the steps (§3.4: 10%%)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-input", type=int, default=384)
    p.add_argument("--max-target", type=int, default=96)


def register(sub) -> None:
    """Adds ``milp`` to ``memlab train``: ``search``, ``instruct``, ``ablate``."""
    p = sub.add_parser("milp", help="MiLP: BO search of the memory injection, instruction tuning, Table 5 ablation")
    msub = p.add_subparsers(dest="milp_command", required=True)
    s = msub.add_parser("search", help="BO (SAAS-GP, qLogNEHVI) + random search over θ=(α,n,r) on one user")
    _common(s)
    s.add_argument("--user", help="episode id, partner name or index (default: the first user)")
    s.add_argument("--trials", type=int, default=12)
    s.add_argument("--initial", type=int, default=4, help="random initial points (shared with random search)")
    s.add_argument("--budget-s", type=float, help="wall-clock budget: no trial starts after it")
    s.add_argument("--surrogate", choices=("map-saas", "nuts"), default="map-saas")
    s.add_argument("--acquisition", choices=("qLogNEHVI", "qNEHVI"), default="qLogNEHVI")
    s.add_argument("--n-range", default="0,32", help="n range lo,hi (Table 6: 0,32)")
    s.add_argument("--ranks", default="8,16,32,64,96", help="rank grid (Table 6: 8,16,32,64,96)")
    s.add_argument("--no-layer-search", action="store_true", help="fix α to all layers")
    s.add_argument("--valid-generations", type=int, default=2, help="held-out replies generated for ROUGE-L")
    s.add_argument("--max-new-tokens", type=int, default=40)
    s.add_argument("--max-memory-examples", type=int)
    s.add_argument("--plot", help="also write the plot here (PNG)")
    s.set_defaults(func=cmd_search)
    i = msub.add_parser("instruct", help="§2.3 instruction tuning on the training users' histories")
    _common(i)
    i.add_argument("--lora-r", type=int, default=8)
    i.add_argument("--max-examples", type=int, help="at most this many training examples (seeded sample)")
    i.add_argument("--max-valid", type=int, default=16)
    i.add_argument("--budget-s", type=float, help="wall-clock budget")
    i.set_defaults(func=cmd_instruct)
    a = msub.add_parser("ablate", help="Table 5: full / no search / no instruction tuning / no injection")
    _common(a)
    a.add_argument("--theta", required=True, help="best_theta.json from a search")
    a.add_argument("--instruct", help="instruction adapter directory (default: the shipped one)")
    a.add_argument("--users", type=int, default=3, help="held-out (test-split) users")
    a.add_argument("--replies", type=int, default=2, help="held-out replies per user")
    a.add_argument("--max-new-tokens", type=int, default=40)
    a.set_defaults(func=cmd_ablate)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="memlab train")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
