"""``memlab train consistency``: the persona-consistency classifier behind Con.S / Coh-Con.S.

The embedded all-MiniLM-L6-v2 as a cross-encoder with a LoRA adapter (peft; query/key/value) and two logistic
heads (:mod:`engine.metrics.consistency_model`), trained with binary cross-entropy on the pairs of
:mod:`engine.training.consistency_pairs` (ConvAI2 alignment-labelled persona pairs and replies; the starter
corpus's memory sources and tags) through the shared loop (:mod:`engine.training.loop`: AdamW, budget,
resumable checkpoints, best-by-validation-loss). After training it measures held-out accuracy per source
(ConvAI2 dialogues and starter episodes never trained on, and the persona_nli smoke sample when given) and
writes them into ``classifier.json``, which the metric reports.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from engine.metrics.consistency_model import EMBEDDED_ENCODER, HEADS_FILE, META_FILE, TASKS, build_heads, pooled


class _ClassifierIO:
    """Checkpoints = the peft adapter directory + ``heads.safetensors``."""

    def save(self, model, directory: Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model.encoder.save_pretrained(str(directory))
        save_file({k: v.detach().contiguous().cpu() for k, v in model.heads.state_dict().items()},
                  str(directory / HEADS_FILE))

    def load(self, model, directory: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        directory = Path(directory)
        set_peft_model_state_dict(model.encoder, load_file(str(directory / "adapter_model.safetensors")))
        model.heads.load_state_dict(load_file(str(directory / HEADS_FILE)))


def _module(encoder, heads):
    import torch

    class ConsistencyModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.heads = encoder, heads

        def forward(self, batch):
            x = pooled(self.encoder, {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")
                                      if k in batch})
            logits = torch.stack([self.heads[t](x).squeeze(-1) for t in TASKS], dim=-1)
            return logits.gather(-1, batch["task"].unsqueeze(-1)).squeeze(-1)

    return ConsistencyModule()


def build_model(base: str, *, r: int = 16, alpha: int = 32, dropout: float = 0.1, seed: int = 0):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    from engine.metrics.consistency_model import resolve_encoder_path

    torch.manual_seed(seed)
    path = resolve_encoder_path(base)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=["query", "key", "value"],
                        bias="none")
    encoder = get_peft_model(encoder, config)
    heads = build_heads(encoder.config.hidden_size)
    return tokenizer, _module(encoder, heads)


def collate_for(tokenizer, max_length: int):
    import torch

    def collate(pairs):
        batch = tokenizer([p.first_text() for p in pairs], [p.second for p in pairs], padding=True,
                          truncation="longest_first", max_length=max_length, return_tensors="pt")
        batch = dict(batch)
        batch["task"] = torch.tensor([TASKS.index(p.task) for p in pairs])
        batch["labels"] = torch.tensor([float(p.label) for p in pairs])
        return batch

    return collate


def loss_fn(model, batch):
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(model(batch), batch["labels"])


def accuracy_by_source(model, pairs, collate, batch_size: int = 64, threshold: float = 0.5) -> dict:
    """``{source: {"n", "accuracy", "positives", "negatives"}}`` plus ``"<task>:all"`` rows."""
    import torch

    model.eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i:i + batch_size]
            preds.extend((torch.sigmoid(model(collate(chunk))) >= threshold).long().tolist())
    rows: dict[str, list] = {}
    for p, y in zip(pairs, preds):
        keys = [p.source.split(":", 1)[0] + ":" + p.task, p.source] if ":" in p.source else [p.source]
        for key in keys:
            rows.setdefault(key, []).append((p.label, y))
    out = {}
    for key, lst in sorted(rows.items()):
        out[key] = {"n": len(lst), "accuracy": sum(a == b for a, b in lst) / len(lst),
                    "positives": sum(a for a, _ in lst), "negatives": sum(1 - a for a, _ in lst)}
    return out


def _sample(pairs, k, rng):
    pairs = list(pairs)
    return pairs if len(pairs) <= k else rng.sample(pairs, k)


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
        counts["convai2_train_bands"], counts["convai2_held_out_bands"] = c_tr, c_ho
        coh_tr = [p for p in tr if p.task == "coherence"]
        train += [p for p in tr if p.task == "consistency"] + _sample(coh_tr, args.coherence_pairs, rng)
        coh_ho = [p for p in ho if p.task == "coherence"]
        held += [p for p in ho if p.task == "consistency"] + _sample(coh_ho, 1200, rng)
    if args.starter_episodes:
        tr_eps = list(generate_episodes(args.starter_episodes, seed=args.seed))
        ho_eps = list(generate_episodes(max(10, args.starter_episodes // 5), seed=args.seed + 1000))
        st_tr, st_ho = starter_pairs(tr_eps, seed=args.seed), starter_pairs(ho_eps, seed=args.seed + 1)
        log(f"starter corpus: {len(tr_eps)} training / {len(ho_eps)} held-out episodes (generated, seeds "
            f"{args.seed} and {args.seed + 1000})")
        cons = [p for p in st_tr if p.task == "consistency"]
        coh = [p for p in st_tr if p.task == "coherence"]
        train += _sample(cons, args.starter_pairs, rng) + _sample(coh, args.starter_pairs // 4, rng)
        held += _sample([p for p in st_ho if p.task == "consistency"], 1500, rng) + \
            _sample([p for p in st_ho if p.task == "coherence"], 500, rng)
    rng.shuffle(train)
    if args.max_train_pairs:
        train = train[:args.max_train_pairs]
    counts["train_pairs"], counts["held_out_pairs"] = len(train), len(held)
    return train, held, counts


def register(tsub) -> None:
    c = tsub.add_parser("consistency", help="the persona-consistency classifier behind Con.S / Coh-Con.S",
                        description="LoRA fine-tuning of the embedded MiniLM as a cross-encoder with a consistency "
                                    "head and a coherence head, on ConvAI2 persona pairs and the starter corpus.")
    c.add_argument("--out", required=True, help="output directory (the shipped one is assets/consistency/...)")
    c.add_argument("--convai2", help="Xpersona-shaped ConvAI2 JSON (e.g. ../shared/datasets/convai2/"
                                     "personachat_valid.json)")
    c.add_argument("--max-dialogues", type=int)
    c.add_argument("--held-out", type=float, default=0.15, help="share of ConvAI2 dialogues held out")
    c.add_argument("--coherence-pairs", type=int, default=3000, help="ConvAI2 coherence pairs to train on")
    c.add_argument("--starter-episodes", type=int, default=150, help="generated starter episodes (0: none)")
    c.add_argument("--starter-pairs", type=int, default=2500, help="starter consistency pairs to train on")
    c.add_argument("--persona-nli", help="directory with nli_positive.tsv / nli_negative.tsv (extra held-out check)")
    c.add_argument("--encoder", default=EMBEDDED_ENCODER, help="base encoder (default: the embedded MiniLM)")
    c.add_argument("--lora-r", type=int, default=16)
    c.add_argument("--max-length", type=int, default=128)
    c.add_argument("--valid-pairs", type=int, default=384, help="held-out pairs for the validation loss")
    c.add_argument("--max-train-pairs", type=int)
    c.add_argument("--epochs", type=int, default=1)
    c.add_argument("--lr", type=float, default=5e-4)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--max-steps", type=int)
    c.add_argument("--max-minutes", type=float, help="wall-clock budget for the training loop (resumable)")
    c.add_argument("--resume", action="store_true")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args) -> int:
    try:
        return _run(args)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as e:
        _log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _log("interrupted; run again with --resume to continue from the last checkpoint")
        return 130


def _run(args) -> int:
    import torch

    from engine.backbones.encoding import encode
    from engine.backbones.loading import load_encoder
    from engine.metrics.consistency_model import resolve_encoder_path

    from .consistency_pairs import persona_nli_pairs
    from .loop import TrainConfig, train

    if not args.convai2 and not args.starter_episodes:
        raise ValueError("no data: give --convai2 FILE and/or --starter-episodes N")
    torch.manual_seed(args.seed)
    wall0 = time.time()
    sim = load_encoder(resolve_encoder_path(args.encoder), device="cpu")
    train_pairs, held, counts = build_datasets(args, lambda xs: encode(sim, xs, batch_size=64).numpy(), _log)
    del sim
    nli = persona_nli_pairs(args.persona_nli) if args.persona_nli else []
    rng = random.Random(args.seed)
    valid = _sample(held, args.valid_pairs, rng)
    tokenizer, model = build_model(args.encoder, r=args.lora_r, seed=args.seed)
    collate = collate_for(tokenizer, args.max_length)
    _log(f"training on {len(train_pairs)} pairs ({sum(p.task == 'consistency' for p in train_pairs)} consistency), "
         f"validation loss on {len(valid)}, held-out accuracy on {len(held)} (+{len(nli)} persona_nli)")
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=1,
                         max_steps=args.max_steps, seed=args.seed, eval_before=False,
                         max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                         show_bar=not args.no_progress)
    out = Path(args.out)
    result = train(model, train_pairs, valid, collate=collate, loss_fn=loss_fn, io=_ClassifierIO(), out_dir=out,
                   config=config, resume=args.resume,
                   reasons=[f"LoRA r={args.lora_r} over {args.encoder}; two heads {TASKS}"])
    _log(f"training {result.status}: {result.global_step} steps in {result.elapsed_s:.0f} s; measuring held-out accuracy")
    held_acc = accuracy_by_source(model, held + nli, collate)
    meta = {"format": "memlab-consistency/1", "base_encoder": args.encoder, "max_length": args.max_length,
            "threshold": 0.5, "lora_r": args.lora_r, "tasks": list(TASKS), "held_out": held_acc,
            "data": counts, "training": {"status": result.status, "steps": result.global_step,
                                         "batch_size": args.batch_size, "lr": args.lr,
                                         "elapsed_s": round(result.elapsed_s, 1), "cpu_s": round(result.cpu_s, 1),
                                         "best_valid_loss": result.best_eval_loss},
            "wall_s_total": round(time.time() - wall0, 1)}
    (out / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(meta, indent=1))
    else:
        print(f"classifier: {out}")
        for key, row in held_acc.items():
            print(f"  held-out {key:<36} n={row['n']:5d}  accuracy {row['accuracy']:.3f}")
    return 0
