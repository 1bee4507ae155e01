"""``memlab train emma-dialogue`` and ``memlab train emma-retriever`` (EMMA paper §4, Appendix E).

Both read ``memlab-episode/1`` files (``--train``, optional ``--valid``; without ``--valid`` a seeded share of
the training episodes is held out) or, without ``--train``, generate the project's starter corpus.  Defaults
are the paper's (App. E.1: lr 1e-3, LoRA r=32/alpha=32/dropout 0.1, max input 1024, target 64, batch 52 as
4 x 13 accumulation, 3 epochs with early stopping; App. E.2: lr 1e-4, batch 90, margin 0.2, context 512,
memory 32, 20 epochs with early stopping).  Outputs go to the user data dir unless ``--out`` is given.
Registered by EMMA's registry record (``train_module``); see docs/architecture.md.
"""

from __future__ import annotations

from engine.training.cli_args import data_args, err, guard, loop_args, loop_config, load_data, print_result


def register(tsub) -> None:
    """Add ``emma-dialogue`` and ``emma-retriever`` to ``memlab train``'s sub-parsers."""
    d = tsub.add_parser("emma-dialogue", help="(Q)LoRA fine-tuning of EMMA's dialogue module (3 tasks)")
    data_args(d)
    d.add_argument("--preset", choices=("embedded", "emma-paper"), default="embedded",
                   help="emma-paper: FLAN-T5-Large + LoRA r=32/alpha=32/dropout 0.1, QLoRA on CUDA (App. E.1)")
    d.add_argument("--backbone", help="generator: HF id or directory (default: the preset's; embedded: SmolLM2-135M-Instruct)")
    d.add_argument("--out", help="adapter directory (default: <user data>/adapters/emma-<backbone>)")
    loop_args(d, epochs=3, lr=1e-3, batch_size=4, grad_accum=13, patience=1)
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
    data_args(r)
    r.add_argument("--preset", choices=("embedded", "emma-paper"), default="embedded",
                   help="emma-paper: two bert-base-uncased encoders with [CLS] vectors (App. E.2)")
    r.add_argument("--encoder", help="base encoder: HF id or directory (default: the preset's; embedded: all-MiniLM-L6-v2)")
    r.add_argument("--pooling", choices=("mean", "cls"), help="default: the encoder's own")
    r.add_argument("--out", help="output directory (default: <user data>/retrievers/emma-<encoder>)")
    loop_args(r, epochs=20, lr=1e-4, batch_size=90, grad_accum=1, patience=2)
    r.add_argument("--context-max", type=int, default=512)
    r.add_argument("--memory-max", type=int, default=32)
    r.add_argument("--margin", type=float, default=0.2)
    r.add_argument("--hard-fraction", type=float, default=0.5, help="share of negatives from the same episode")
    r.add_argument("--in-batch-negatives", action="store_true")
    r.add_argument("--max-train-triples", type=int)
    r.set_defaults(func=run_retriever)

    m = tsub.add_parser("emma-mix", help="retrain the embedded EMMA adapter on LoCoMo/ConvAI2/MaLP + starter corpus "
                                         "(App. E.1 summariser input; length-bucketed; per-source held-out figures)")
    m.add_argument("argv", nargs=__import__("argparse").REMAINDER, help="arguments of python -m engine.systems.emma.train_mix (train|measure ...)")
    m.set_defaults(func=lambda a: __import__("engine.systems.emma.train_mix", fromlist=["main"]).main(a.argv))
    rm = tsub.add_parser("emma-retriever-mix", help="train the retriever from MiniLM on LoCoMo/ConvAI2/starter "
                                                    "(in-batch + hard negatives), measured on unseen LoCoMo")
    rm.add_argument("argv", nargs=__import__("argparse").REMAINDER, help="arguments of python -m engine.systems.emma.train_retriever_mix")
    rm.set_defaults(func=lambda a: __import__("engine.systems.emma.train_retriever_mix", fromlist=["main"]).main(a.argv))
    lh = tsub.add_parser("emma-link-head", help="train and calibrate the encoder link head on realistic pair mixes")
    lh.add_argument("argv", nargs=__import__("argparse").REMAINDER, help="arguments of python -m engine.systems.emma.train_link_head")
    lh.set_defaults(func=lambda a: __import__("engine.systems.emma.train_link_head", fromlist=["main"]).main(a.argv))



@guard
def run_dialogue(args) -> int:
    from .train_dialogue import DialogueTrainSettings, train_dialogue
    from engine.training.lora import LoraSettings
    from .paths import default_adapter_dir

    train, valid, origin = load_data(args)
    err(f"data: {len(train)} training / {len(valid)} validation episodes from {origin}")
    from .presets import get as get_preset

    backbone = args.backbone or get_preset(args.preset).backbone
    if backbone is None:
        from engine.backbones.embedded import check_prepared, default_lm_path

        ok, why = check_prepared()
        if not ok:
            err(f"error: the embedded SmolLM2 is not prepared ({why}); run `memlab models prepare` or pass --backbone")
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
    err(f"training EMMA's dialogue module on {backbone} → {out}")
    report = train_dialogue(train, valid, out, settings=settings, loop_config=loop_config(args),
                            resume=args.resume).to_dict()
    lines = [f"adapter: {out}"]
    b, a = report["before"], report["after"]
    for task, loss in (b.get("loss") or {}).items():
        lines.append(f"validation loss {task}: {loss:.4f} → {a['loss'][task]:.4f}")
    if b.get("link_accuracy") is not None:
        lines.append(f"link-label accuracy on {b['link_pairs']} held-out pairs: "
                     f"{b['link_accuracy']:.3f} → {a['link_accuracy']:.3f}")
    lines.append(f"use it: memlab chat --agent emma --lm {backbone} --adapter {out}")
    print_result(report, args, lines)
    return 0


@guard
def run_retriever(args) -> int:
    from .checkpoints import CHECKPOINT_NAME
    from .train_retriever import RetrieverTrainSettings, train_retriever
    from .paths import default_retriever_dir

    train, valid, origin = load_data(args)
    err(f"data: {len(train)} training / {len(valid)} validation episodes from {origin}")
    from .presets import get as get_preset

    preset = get_preset(args.preset)
    encoder = args.encoder or preset.encoder
    if args.pooling is None and not args.encoder and preset.pooling:
        args.pooling = preset.pooling
    if encoder is None:
        from engine.backbones.embedded import default_encoder_path

        encoder = str(default_encoder_path())
    out = args.out or str(default_retriever_dir(encoder))
    settings = RetrieverTrainSettings(encoder=encoder, pooling=args.pooling, context_max=args.context_max,
                                      memory_max=args.memory_max, margin=args.margin,
                                      hard_fraction=args.hard_fraction, in_batch_negatives=args.in_batch_negatives,
                                      max_train_triples=args.max_train_triples, device=args.device, seed=args.seed)
    err(f"training EMMA's retriever from {encoder} → {out}/{CHECKPOINT_NAME}")
    report = train_retriever(train, valid, out, settings=settings, loop_config=loop_config(args),
                             resume=args.resume).to_dict()
    b, a = report["before"], report["after"]
    lines = [f"retriever: {report['checkpoint']}",
             f"held-out recall@1: {b['recall@1']} → {a['recall@1']}; recall@5: {b['recall@5']} → {a['recall@5']} "
             f"({a['queries']} queries)",
             f"use it: memlab chat --agent emma --encoder {encoder} --retriever {report['checkpoint']}"]
    print_result(report, args, lines)
    return 0
