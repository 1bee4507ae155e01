"""``memlab train consistency``: the persona-consistency classifier behind Con.S / Coh-Con.S.

Two MLP heads over frozen all-MiniLM-L6-v2 sentence vectors (:mod:`engine.metrics.consistency_model`),
trained with binary cross-entropy on the pairs of :mod:`engine.training.consistency_pairs` (ConvAI2
alignment-labelled persona pairs and replies; the starter corpus's memory sources and tags) through the
shared loop (:mod:`engine.training.loop`: AdamW, early stopping on a held-out validation loss, budget,
resumable checkpoints). Every text is embedded once, so the whole pair set trains in a CPU budget.
Afterwards it measures held-out accuracy per source (ConvAI2 dialogues and starter episodes never trained
on, and the persona_nli smoke sample when given) and writes them into ``classifier.json``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from engine.metrics.consistency_model import (EMBEDDED_ENCODER, HEADS_FILE, META_FILE, TASKS, build_heads,
                                              clean_lines, max_over_lines, pair_logits, resolve_encoder_path)


class _HeadsIO:
    def save(self, model, directory: Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in model.heads.state_dict().items()},
                  str(directory / HEADS_FILE))

    def load(self, model, directory: Path) -> None:
        from safetensors.torch import load_file

        model.heads.load_state_dict(load_file(str(Path(directory) / HEADS_FILE)))


class EmbeddingCache:
    """Each distinct text embedded once by the (frozen) encoder; rows of one growing matrix."""

    def __init__(self, encoder, max_length: int = 128, log=None):
        self.encoder, self.max_length, self.log = encoder, max_length, log
        self.index: dict[str, int] = {}
        self.blocks = []

    def __call__(self, texts):
        """Vectors of ``texts`` as a numpy array (what the pair builder's alignment uses)."""
        return self.rows(texts).numpy()

    def rows(self, texts):
        import torch

        from engine.backbones.encoding import encode

        new = [t for t in dict.fromkeys(texts) if t not in self.index]
        if new:
            t0 = time.time()
            new.sort(key=len)  # batches of similar length pad less
            self.blocks.append(encode(self.encoder, new, batch_size=64, max_length=self.max_length))
            for t in new:
                self.index[t] = len(self.index)
            if self.log and len(new) > 500:
                self.log(f"  embedded {len(new)} texts in {time.time() - t0:.0f} s")
        matrix = self.matrix()
        return matrix[torch.tensor([self.index[t] for t in texts], dtype=torch.long)] if texts else matrix[:0]

    def matrix(self):
        import torch

        if len(self.blocks) > 1:
            self.blocks = [torch.cat(self.blocks)]
        return self.blocks[0]


def _module(heads):
    import torch

    class ConsistencyHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = heads

        def forward(self, batch):
            # consistency pairs: max over their premise lines; coherence pairs: one (query, response)
            out = torch.zeros(batch["n"], dtype=batch["v"].dtype)
            line_logits = pair_logits(self.heads["consistency"], batch["line_u"], batch["line_v"])
            cons = max_over_lines(line_logits, batch["line_owner"], batch["n"])
            coh = pair_logits(self.heads["coherence"], batch["u"], batch["v"])
            is_cons = batch["task"] == 0
            out = torch.where(is_cons, cons, coh)
            return out

    return ConsistencyHeads()


def collate_for(cache: EmbeddingCache):
    import torch

    def collate(pairs):
        n = len(pairs)
        line_texts, owner, line_hyp = [], [], []
        firsts, seconds = [], []
        for i, p in enumerate(pairs):
            if p.task == "consistency":
                for line in clean_lines(p.first) or [""]:
                    line_texts.append(line)
                    line_hyp.append(p.second)
                    owner.append(i)
                firsts.append(p.second)  # unused for this pair (coherence head output is discarded)
            else:
                firsts.append(str(p.first))
            seconds.append(p.second)
        return {"n": n,
                "line_u": cache.rows(line_texts), "line_v": cache.rows(line_hyp),
                "line_owner": torch.tensor(owner, dtype=torch.long),
                "u": cache.rows(firsts), "v": cache.rows(seconds),
                "task": torch.tensor([TASKS.index(p.task) for p in pairs]),
                "labels": torch.tensor([float(p.label) for p in pairs])}

    return collate


def loss_fn(model, batch):
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(model(batch), batch["labels"])


def accuracy_by_source(model, pairs, collate, batch_size: int = 512, threshold: float = 0.5) -> dict:
    """``{source: {"n", "accuracy", "positives", "negatives"}}`` plus ``"<corpus>:<task>"`` rows."""
    import torch

    model.eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(pairs), batch_size):
            preds.extend((torch.sigmoid(model(collate(pairs[i:i + batch_size]))) >= threshold).long().tolist())
    rows: dict[str, list] = {}
    for p, y in zip(pairs, preds):
        keys = [p.source.split(":", 1)[0] + ":" + p.task, p.source] if ":" in p.source else [p.source]
        for key in keys:
            rows.setdefault(key, []).append((p.label, y))
    return {key: {"n": len(lst), "accuracy": round(sum(a == b for a, b in lst) / len(lst), 4),
                  "positives": sum(a for a, _ in lst), "negatives": sum(1 - a for a, _ in lst)}
            for key, lst in sorted(rows.items())}


def _sample(pairs, k, rng):
    pairs = list(pairs)
    return pairs if k is None or len(pairs) <= k else rng.sample(pairs, k)


def build_datasets(args, embed, log) -> tuple[list, list, dict]:
    """(train pairs, held-out pairs, data counts)."""
    from engine.data.corpus import generate_episodes

    from .consistency_pairs import convai2_pairs, split_indices, starter_pairs

    rng = random.Random(args.seed)
    train, held, counts = [], [], {}
    if args.convai2:
        dialogues = json.loads(Path(args.convai2).read_text(encoding="utf-8"))
        if args.max_dialogues:
            dialogues = dialogues[:args.max_dialogues]
        tr_idx, ho_idx = split_indices(len(dialogues), args.held_out, args.seed)
        log(f"ConvAI2: {len(tr_idx)} training / {len(ho_idx)} held-out dialogues from {args.convai2}")
        t0 = time.time()
        tr, c_tr = convai2_pairs([dialogues[i] for i in tr_idx], embed, seed=args.seed)
        ho, c_ho = convai2_pairs([dialogues[i] for i in ho_idx], embed, seed=args.seed + 1)
        log(f"  aligned in {time.time() - t0:.0f} s; training bands {c_tr}")
        counts["convai2_dialogues"] = {"train": len(tr_idx), "held_out": len(ho_idx)}
        counts["convai2_train_bands"], counts["convai2_held_out_bands"] = c_tr, c_ho
        train += [p for p in tr if p.task == "consistency"]
        train += _sample([p for p in tr if p.task == "coherence"], args.coherence_pairs, rng)
        held += ho
    if args.starter_episodes:
        tr_eps = list(generate_episodes(args.starter_episodes, seed=args.seed))
        ho_eps = list(generate_episodes(max(10, args.starter_episodes // 5), seed=args.seed + 1000))
        st_tr, st_ho = starter_pairs(tr_eps, seed=args.seed), starter_pairs(ho_eps, seed=args.seed + 1)
        log(f"starter corpus: {len(tr_eps)} training / {len(ho_eps)} held-out episodes (generated, seeds "
            f"{args.seed} and {args.seed + 1000})")
        counts["starter_episodes"] = {"train": len(tr_eps), "held_out": len(ho_eps)}
        train += _sample([p for p in st_tr if p.task == "consistency"], args.starter_pairs, rng)
        train += _sample([p for p in st_tr if p.task == "coherence"], args.starter_pairs // 2, rng)
        held += [p for p in st_ho if p.task == "consistency"]
        held += _sample([p for p in st_ho if p.task == "coherence"], 1000, rng)
    rng.shuffle(train)
    if args.max_train_pairs:
        train = train[:args.max_train_pairs]
    counts["train_pairs"], counts["held_out_pairs"] = len(train), len(held)
    return train, held, counts


def register(tsub) -> None:
    c = tsub.add_parser("consistency", help="the persona-consistency classifier behind Con.S / Coh-Con.S",
                        description="Two MLP heads (consistency, coherence) over frozen MiniLM sentence vectors, "
                                    "trained on ConvAI2 persona pairs and the starter corpus's memory sources/tags.")
    c.add_argument("--out", required=True, help="output directory (the shipped one is assets/consistency/...)")
    c.add_argument("--convai2", help="Xpersona-shaped ConvAI2 JSON (e.g. ../shared/datasets/convai2/"
                                     "personachat_valid.json)")
    c.add_argument("--max-dialogues", type=int)
    c.add_argument("--held-out", type=float, default=0.15, help="share of ConvAI2 dialogues held out")
    c.add_argument("--coherence-pairs", type=int, default=12000, help="ConvAI2 coherence pairs to train on")
    c.add_argument("--starter-episodes", type=int, default=300, help="generated starter episodes (0: none)")
    c.add_argument("--starter-pairs", type=int, default=8000, help="starter consistency pairs to train on")
    c.add_argument("--persona-nli", help="directory with nli_positive.tsv / nli_negative.tsv (extra held-out check)")
    c.add_argument("--encoder", default=EMBEDDED_ENCODER, help="frozen encoder (default: the embedded MiniLM)")
    c.add_argument("--hidden", type=int, default=256)
    c.add_argument("--max-length", type=int, default=128)
    c.add_argument("--valid-pairs", type=int, default=2000, help="held-out pairs for the validation loss")
    c.add_argument("--max-train-pairs", type=int)
    c.add_argument("--epochs", type=int, default=20)
    c.add_argument("--patience", type=int, default=3)
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--batch-size", type=int, default=256)
    c.add_argument("--max-steps", type=int)
    c.add_argument("--max-minutes", type=float, help="wall-clock budget for the training loop (resumable)")
    c.add_argument("--resume", action="store_true")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", help="device for the encoder (default: the device policy)")
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args) -> int:
    from engine.backbones.types import ModelNotFoundError

    try:
        return _run(args)
    except (FileNotFoundError, ValueError, ModelNotFoundError) as e:
        _log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _log("interrupted; run again with --resume to continue from the last checkpoint")
        return 130


def _run(args) -> int:
    import torch

    from engine.backbones.loading import load_encoder

    from .consistency_pairs import persona_nli_pairs
    from .loop import TrainConfig, train

    if not args.convai2 and not args.starter_episodes:
        raise ValueError("no data: give --convai2 FILE and/or --starter-episodes N")
    torch.manual_seed(args.seed)
    wall0, cpu0 = time.time(), time.process_time()
    encoder = load_encoder(resolve_encoder_path(args.encoder), device=args.device)
    _log(f"encoder: {encoder.name} ({encoder.pooling} pooling) on {encoder.plan.device}")
    cache = EmbeddingCache(encoder, args.max_length, _log)
    train_pairs, held, counts = build_datasets(args, cache, _log)
    nli = persona_nli_pairs(args.persona_nli) if args.persona_nli else []
    valid = _sample(held, args.valid_pairs, random.Random(args.seed))
    collate = collate_for(cache)
    t0 = time.time()
    _log("embedding every pair's texts once (frozen encoder)")
    for start in range(0, len(train_pairs) + len(held) + len(nli), 2048):
        collate((train_pairs + held + nli)[start:start + 2048])
    _log(f"  {len(cache.index)} distinct texts embedded ({time.time() - t0:.0f} s)")
    dim = int(cache.matrix().shape[1])
    model = _module(build_heads(dim, args.hidden))
    _log(f"training on {len(train_pairs)} pairs ({sum(p.task == 'consistency' for p in train_pairs)} consistency), "
         f"validation loss on {len(valid)}, accuracy on {len(held)} held-out (+{len(nli)} persona_nli)")
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=args.patience,
                         max_steps=args.max_steps, seed=args.seed, weight_decay=0.01,
                         max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                         show_bar=not args.no_progress)
    out = Path(args.out)
    result = train(model, train_pairs, valid, collate=collate, loss_fn=loss_fn, io=_HeadsIO(), out_dir=out,
                   config=config, resume=args.resume,
                   reasons=[f"frozen {args.encoder}; heads {TASKS} (MLP {4 * dim}->{args.hidden}->1)"])
    _log(f"training {result.status}: {result.global_step} steps in {result.elapsed_s:.0f} s; measuring held-out accuracy")
    held_acc = accuracy_by_source(model, held + nli, collate)
    meta = {"format": "memlab-consistency/1", "base_encoder": args.encoder, "pooling": encoder.pooling,
            "dim": dim, "hidden": args.hidden, "max_length": args.max_length, "threshold": 0.5,
            "tasks": list(TASKS), "held_out": held_acc, "data": counts,
            "training": {"status": result.status, "steps": result.global_step, "epochs": result.epochs_done,
                         "batch_size": args.batch_size, "lr": args.lr, "elapsed_s": round(result.elapsed_s, 1),
                         "best_valid_loss": result.best_eval_loss, "initial_valid_loss": result.initial_eval_loss},
            "wall_s_total": round(time.time() - wall0, 1), "cpu_s_total": round(time.process_time() - cpu0, 1)}
    (out / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(meta, indent=1))
    else:
        print(f"classifier: {out}")
        for key, row in held_acc.items():
            print(f"  held-out {key:<36} n={row['n']:5d}  accuracy {row['accuracy']:.3f}")
    return 0
