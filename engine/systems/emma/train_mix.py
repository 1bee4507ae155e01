"""Retraining EMMA's dialogue module on a mix of real speaker-attributed data and the starter corpus.

``memlab train emma-mix`` (and ``python -m engine.systems.emma.train_mix``): the four tasks of the shipped
adapter — memory summarisation in the App. E.1 form (``summarize [ABOUT WHO]: {FINAL GENERATION SEQUENCE}``)
from LoCoMo, ConvAI2, MaLP and the starter corpus (:mod:`engine.systems.emma.train_sources`), memory linking
on realistic pair mixes (most pairs unrelated), generation (starter corpus) and the session summary
(``summarize [SESSION]``, the summary baseline's task, from LoCoMo's session summaries).

On CPU the batches are *length buckets*: examples of similar token length are grouped into micro-batches
before the loop shuffles them, so a short link pair is never padded to a 500-token summarisation prompt.
Training may start from an existing adapter (``--init DIR``: the shipped one) when the LoRA shape matches.

:func:`measure` gives the held-out figures per source: answer-token loss of the summariser per source and of
the other tasks, and the linker's precision/recall on held-out pairs with the threshold calibrated on a
separate calibration half for the highest precision at recall ≥ ``target_recall``
(see :func:`calibrate_threshold`); the result is written next to the adapter as ``linker.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.systems.emma import formats
from engine.systems.emma import train_sources as ts

LINKER_FILE = "linker.json"


@dataclass
class MixSettings:
    """How many examples of each (task, source) to draw for training, and the encoding limits."""

    summarize: dict = field(default_factory=lambda: {"locomo": 240, "convai2": 100, "malp": 50, "starter": 120})
    link: dict = field(default_factory=lambda: {"locomo": 200, "starter": 200})
    generation: int = 80
    session_summary: int = 24
    starter_episodes: int = 120
    convai2_dialogues: int = 400  # the first N ConvAI2 dialogues are aligned (MiniLM) and used
    max_input: int = 512
    max_target: int = 64
    micro_batch: int = 8
    seed: int = 0


def _dialogue_mod():
    try:
        from engine.systems.emma import train_dialogue as td
    except ImportError:
        from engine.training import emma_dialogue as td
    return td


def _encoder_embed():
    """A MiniLM ``embed(texts) -> numpy`` for the ConvAI2 persona alignment."""
    from engine.backbones.embedded import default_encoder_path
    from engine.backbones.loading import load_encoder
    from engine.systems.emma.retriever import encode_texts

    enc = load_encoder(str(default_encoder_path()))
    return lambda texts: encode_texts(enc, list(texts), 64)


def _take(items: list, n: int, rng: random.Random) -> list:
    return items if len(items) <= n else rng.sample(items, n)


def build_mix(settings: MixSettings, *, held_out: bool, embed=None) -> list:
    """The training mix (``held_out=False``) or the held-out evaluation examples (``held_out=True``)."""
    from engine.data.corpus.generator import generate_episodes

    td = _dialogue_mod()
    rng = random.Random(settings.seed + held_out)
    lo = ts.locomo_episodes()
    conv = None
    if settings.summarize.get("convai2"):
        from engine.data.convai2 import read_convai2

        conv = read_convai2(ts.CONVAI2_FILE)[:settings.convai2_dialogues]
    starter = generate_episodes(settings.starter_episodes if not held_out else 24,
                                seed=7 if not held_out else 1001)
    out = []
    pools = {
        "locomo": lambda: ts.locomo_summaries(lo, held_out=held_out, seed=settings.seed),
        "convai2": lambda: ts.convai2_summaries(conv, embed or _encoder_embed(), held_out=held_out,
                                                seed=settings.seed),
        "malp": lambda: ts.malp_summaries(held_out=held_out, seed=settings.seed),
        "starter": lambda: ts.starter_summaries(starter),
    }
    for source, n in settings.summarize.items():
        if n:
            out += _take(pools[source](), n, rng)
    links = {"locomo": lambda: ts.locomo_link_pairs(lo, held_out=held_out, seed=settings.seed),
             "starter": lambda: ts.starter_link_pairs(starter, seed=settings.seed)}
    for source, n in settings.link.items():
        if n:
            out += _take(links[source](), n, rng)
    if settings.generation:
        gen = [e for ep in starter for e in td.generation_examples(ep)]
        for e in gen:
            e.episode = f"starter:{e.episode}"
        out += _take(gen, settings.generation, rng)
    if settings.session_summary:
        out += _take(ts.locomo_session_summaries(lo, held_out=held_out), settings.session_summary, rng)
    return out


def _to_json(ex) -> dict:
    fields = {k: ({"name": v.name, "job": v.job, "_speaker": True} if hasattr(v, "job") and hasattr(v, "name") else v)
              for k, v in ex.fields.items()}
    return {"task": ex.task, "fields": fields, "target": ex.target, "episode": ex.episode}


def _from_json(d: dict):
    from engine.data.model import Speaker

    td = _dialogue_mod()
    fields = {k: (Speaker(v["name"], v["job"]) if isinstance(v, dict) and v.get("_speaker") else v)
              for k, v in d["fields"].items()}
    for k in ("session_turns", "history"):
        if k in fields:
            fields[k] = [tuple(t) for t in fields[k]]
    if "memories" in fields:
        fields["memories"] = [(t, list(l)) for t, l in fields["memories"]]
    return td.TaskExample(d["task"], fields, d["target"], d["episode"])


def save_examples(examples, path: Path) -> None:
    Path(path).write_text(json.dumps([_to_json(e) for e in examples]))


def load_examples(path: Path) -> list:
    return [_from_json(d) for d in json.loads(Path(path).read_text())]


def encode(examples, tokenizer, kind: str, settings: MixSettings) -> list[dict]:
    td = _dialogue_mod()
    out = []
    from engine.training import encoding

    for ex in examples:
        if ex.task != "generation":  # a prompt cut at the front would lose its instruction: leave it out
            if kind == "seq2seq":
                n = encoding.prompt_length(tokenizer, kind, source=formats.seq2seq_input(ex.task, **ex.fields))
            else:
                n = encoding.prompt_length(tokenizer, kind, messages=formats.chat_messages(ex.task, **ex.fields))
            if n > settings.max_input:
                continue
        enc = td.encode_example(ex, tokenizer, kind, settings.max_input, settings.max_target)
        enc.update(task=ex.task, source=ts.source_of(ex))
        out.append(enc)
    return out


def length_buckets(encoded: list[dict], size: int, seed: int) -> list[list[dict]]:
    """Micro-batches of ``size`` examples of similar length (sorted by length, then chunked)."""
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]["input_ids"]), random.Random(seed + i).random()))
    return [[encoded[i] for i in order[k:k + size]] for k in range(0, len(order), size)]


def load_adapter_weights(model, adapter_dir: Path, reasons: list[str]) -> bool:
    """Start from an existing adapter's LoRA weights when every tensor fits (else train from scratch)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    f = Path(adapter_dir) / "adapter_model.safetensors"
    if not f.is_file():
        reasons.append(f"--init {adapter_dir}: no adapter_model.safetensors; starting from scratch")
        return False
    state = load_file(str(f))
    own = {k: v.shape for k, v in model.state_dict().items() if "lora_" in k}
    res = set_peft_model_state_dict(model, state)
    unexpected = getattr(res, "unexpected_keys", []) or []
    if unexpected:
        reasons.append(f"--init {adapter_dir}: {len(unexpected)} tensors did not fit; starting from scratch")
        return False
    reasons.append(f"started from the adapter in {adapter_dir} ({len(state)} tensors, {len(own)} LoRA tensors here)")
    return True


# ----------------------------------------------------------------------------- measuring

def calibrate_threshold(probs, labels, target_recall: float = 0.5) -> dict:
    """The threshold with the highest precision among those keeping recall ≥ ``target_recall``
    (ties: the lower threshold, i.e. more recall)."""
    pairs = sorted(zip(probs, labels), key=lambda x: -x[0])
    pos = sum(labels)
    best = None
    tp = fp = 0
    for i, (p, y) in enumerate(pairs):
        tp += y
        fp += 1 - y
        recall = tp / pos if pos else 0.0
        precision = tp / (tp + fp)
        nxt = pairs[i + 1][0] if i + 1 < len(pairs) else -1.0
        if recall >= target_recall and (best is None or precision > best["precision"]) and p != nxt:
            best = {"threshold": (p + max(nxt, 0.0)) / 2, "precision": precision, "recall": recall}
    return best or {"threshold": 0.5, "precision": None, "recall": None}


def precision_recall(probs, labels, threshold: float) -> dict:
    tp = sum(1 for p, y in zip(probs, labels) if p > threshold and y)
    fp = sum(1 for p, y in zip(probs, labels) if p > threshold and not y)
    fn = sum(1 for p, y in zip(probs, labels) if p <= threshold and y)
    return {"precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
            "linked": tp + fp, "positives": tp + fn, "pairs": len(labels)}


def auc(probs, labels) -> float | None:
    pos = [p for p, y in zip(probs, labels) if y]
    neg = [p for p, y in zip(probs, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def measure(lm, held_out: list, settings: MixSettings, *, per_source: int = 24, link_pairs: int = 240,
            target_recall: float = 0.5) -> dict:
    """Held-out figures: summariser loss per source, generation / session-summary loss, linker P/R."""
    import torch

    from engine.systems.emma.dialogue import DialogueModule

    td = _dialogue_mod()
    from engine.training import encoding

    rng = random.Random(settings.seed + 99)
    t0 = time.process_time()
    out: dict = {"summarize_loss": {}, "loss": {}}
    model, tok, kind = lm.model, lm.tokenizer, lm.kind
    pad = encoding.pad_id(tok)
    model.eval()
    with torch.no_grad():
        for source in ts.SOURCES:
            exs = _take([e for e in held_out if e.task == "summarize" and ts.source_of(e) == source], per_source, rng)
            if exs:
                losses = td.example_losses(model, encode(exs, tok, kind, settings), kind, pad)
                out["summarize_loss"][source] = sum(losses) / len(losses)
        for task in ("generation", formats.SESSION_SUMMARY_TASK):
            exs = _take([e for e in held_out if e.task == task], per_source, rng)
            if exs:
                losses = td.example_losses(model, encode(exs, tok, kind, settings), kind, pad)
                out["loss"][task] = sum(losses) / len(losses)
    links = _take([e for e in held_out if e.task == "link"], link_pairs, rng)
    rng.shuffle(links)
    dialogue = DialogueModule(lm)
    probs = [float(p) for p in dialogue.link_probabilities([(e.fields["m1"], e.fields["m2"]) for e in links])]
    labels = [int(e.target == formats.LINK_LABELS[0]) for e in links]
    half = len(links) // 2
    cal = calibrate_threshold(probs[:half], labels[:half], target_recall)
    out["link"] = {
        "auc": auc(probs, labels), "pairs": len(links), "positive_share": sum(labels) / len(labels) if labels else None,
        "target_recall": target_recall, "calibration": cal | {"pairs": half},
        "test": precision_recall(probs[half:], labels[half:], cal["threshold"]),
        "test_at_0.5": precision_recall(probs[half:], labels[half:], 0.5),
        "by_source_auc": {s: auc([p for p, e in zip(probs, links) if ts.source_of(e) == s],
                                 [y for y, e in zip(labels, links) if ts.source_of(e) == s]) for s in ("locomo", "starter")},
    }
    out["cpu_s"] = time.process_time() - t0
    return out


# ----------------------------------------------------------------------------- training

def train_mix(out_dir: Path, *, settings: MixSettings, init: Path | None, budget_s: float, resume: bool,
              lr: float = 1e-3, progress=None) -> dict:
    from engine.backbones.embedded import default_lm_path
    from engine.backbones.loading import load_lm
    from engine.training import encoding
    from engine.training.lora import LoraSettings, attach_lora
    from engine.training.loop import PeftAdapterIO, TrainConfig, train

    lm = load_lm(str(default_lm_path()))
    reasons = list(lm.plan.reasons)
    cache = Path(out_dir) / "examples"
    if (cache / "train.json").is_file():
        examples, held_all = load_examples(cache / "train.json"), load_examples(cache / "held_out.json")
    else:
        embed = _encoder_embed()
        examples = build_mix(settings, held_out=False, embed=embed)
        held_all = build_mix(MixSettings(summarize={k: 400 for k in settings.summarize},
                                         link={"locomo": 2000, "starter": 2000}, generation=200, session_summary=50,
                                         seed=settings.seed), held_out=True, embed=embed)
        cache.mkdir(parents=True, exist_ok=True)
        save_examples(examples, cache / "train.json")
        save_examples(held_all, cache / "held_out.json")
    counts: dict = {}
    for e in examples:
        key = f"{e.task}/{ts.source_of(e)}"
        counts[key] = counts.get(key, 0) + 1
    reasons.append(f"{len(examples)} training examples: {counts}")
    enc = encode(examples, lm.tokenizer, lm.kind, settings)
    buckets = length_buckets(enc, settings.micro_batch, settings.seed)
    vr = random.Random(settings.seed + 5)
    held = []
    for task, n in (("summarize", 24), ("link", 16), ("generation", 6), (formats.SESSION_SUMMARY_TASK, 2)):
        held += _take([e for e in held_all if e.task == task], n, vr)
    valid = length_buckets(encode(held, lm.tokenizer, lm.kind, settings), 4, settings.seed)
    model = attach_lora(lm.model, lm.kind, LoraSettings(), reasons)
    if init and not (resume and (Path(out_dir) / "checkpoint-last").is_dir()):
        load_adapter_weights(model, init, reasons)
    pad = encoding.pad_id(lm.tokenizer)
    cfg = TrainConfig(epochs=1, lr=lr, batch_size=1, grad_accum=1, patience=1, max_seconds=budget_s,
                      eval_before=True, eval_batch_size=1, seed=settings.seed, show_bar=False)
    result = train(model, buckets, valid, collate=lambda b: encoding.collate(b[0], lm.kind, pad),
                   loss_fn=encoding.lm_loss, io=PeftAdapterIO(), out_dir=out_dir, config=cfg, progress=progress,
                   resume=resume, reasons=reasons)
    _dialogue_mod()._write_base_name(Path(out_dir), lm.name)
    log = Path(out_dir) / "training.json"  # the prompt format is part of the adapter (dialogue.summary_prompt_kind)
    if log.is_file():
        rec = json.loads(log.read_text())
        rec["summary_prompt"] = "speakers"
        log.write_text(json.dumps(rec, indent=1))
    (Path(out_dir) / "mix.json").write_text(json.dumps({"settings": asdict(settings), "counts": counts,
                                                        "micro_batches": len(buckets)}, indent=1))
    return asdict(result)


def run_measure(adapter: str | None, out_file: Path | None, settings: MixSettings, target_recall: float,
                held_out_file: Path) -> dict:
    from engine.backbones.embedded import default_lm_path
    from engine.backbones.loading import load_lm

    lm = load_lm(str(default_lm_path()), adapter=adapter)
    held = load_examples(held_out_file)
    res = measure(lm, held, settings, target_recall=target_recall)
    res["adapter"] = adapter
    if out_file:
        out_file.write_text(json.dumps(res, indent=1))
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.systems.emma.train_mix", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--init", help="adapter to start from (default: none)")
    t.add_argument("--budget-s", type=float, default=2400)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--resume", action="store_true")
    m = sub.add_parser("measure")
    m.add_argument("--adapter", help="adapter directory (default: none = the bare backbone)")
    m.add_argument("--out", help="JSON file for the figures")
    m.add_argument("--target-recall", type=float, default=0.5)
    m.add_argument("--held-out", required=True, help="examples/held_out.json written by `train`")
    m.add_argument("--write-linker", action="store_true", help=f"write {LINKER_FILE} into the adapter directory")
    args = p.parse_args(argv)
    settings = MixSettings()
    if args.cmd == "train":
        def progress(ev):
            print(json.dumps({"phase": ev.phase, "step": ev.step, "of": ev.total_steps, "loss": ev.loss,
                              "eval_loss": ev.eval_loss, "elapsed_s": round(ev.elapsed_s), "msg": ev.message}),
                  flush=True)
        res = train_mix(Path(args.out), settings=settings, init=Path(args.init) if args.init else None,
                        budget_s=args.budget_s, resume=args.resume, lr=args.lr, progress=progress)
        print(json.dumps({k: res[k] for k in ("status", "global_step", "initial_eval_loss", "best_eval_loss",
                                               "elapsed_s", "cpu_s")}), flush=True)
        return 0
    res = run_measure(args.adapter, Path(args.out) if args.out else None, settings, args.target_recall,
                      Path(args.held_out))
    print(json.dumps(res), flush=True)
    if args.write_linker and args.adapter:
        link = res["link"]
        (Path(args.adapter) / LINKER_FILE).write_text(json.dumps({
            "threshold": link["calibration"]["threshold"], "target_recall": link["target_recall"],
            "calibration": link["calibration"], "held_out_test": link["test"], "auc": link["auc"],
            "note": "p(positive) threshold calibrated on held-out pairs (LoCoMo conversations "
                    f"{', '.join(ts.LOCOMO_HELD_OUT)} + unseen starter episodes) for the highest precision at "
                    f"recall >= {link['target_recall']}"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
