"""``memlab chat``: live mixed-session chat in the terminal, or a scripted chat printed as JSON.

    memlab chat --agent emma --main "Alice:teacher" --partner "Bob:student"
    memlab chat --agent rag --main "Alice:teacher" --script chat.txt --json

Commands while chatting: ``/partner NAME:JOB`` ends the session (showing what was stored) and starts
the next one with that partner; ``/memory`` prints memories and links; ``/save FILE``; ``/quit``.
A script has one user line per line; ``/partner`` lines are allowed; blank lines and ``#`` comments
are skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.data.model import Speaker
from engine.systems import registry


def register(sub) -> None:
    systems = registry.systems()
    listing = "\n".join(f"  {r.name:14} {r.help}" for r in systems)
    p = sub.add_parser("chat", help="chat with an agent in the terminal (mixed-session: /partner switches)",
                       description=__doc__ + "\nSystems (--agent):\n" + listing,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--agent", choices=[r.name for r in systems], default=systems[0].name if systems else None,
                   help="the system to chat with (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a system option (repeatable), e.g. --set k=5; see the system's record for its options")
    p.add_argument("--main", default="Alice:teacher", help='the agent\'s own speaker, "NAME:JOB"')
    p.add_argument("--partner", help='first session\'s partner, "NAME:JOB"')
    p.add_argument("--preset", choices=("embedded", "emma-paper"), default="embedded",
                   help="EMMA's models: embedded (SmolLM2-135M + shipped adapter, MiniLM) or emma-paper "
                        "(FLAN-T5-Large + LoRA, 4-bit on CUDA; two bert-base-uncased encoders, [CLS]); "
                        "--lm/--encoder override it")
    p.add_argument("--lm", help="generator: HF id or directory (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--encoder", help="sentence encoder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--adapter", default="auto",
                   help="LoRA adapter directory for the generator; 'auto' (default): the EMMA adapter for the "
                        "embedded generator when --lm is not given; 'none': no adapter")
    p.add_argument("--retriever", help="EMMA retriever checkpoint (.safetensors with dialogue_encoder./memory_encoder. keys)")
    p.add_argument("--resume", help="continue a chat saved with /save or by the app (memlab-chat/2 or /1)")
    p.add_argument("--script", help="run the user lines of FILE instead of reading the terminal")
    p.add_argument("--json", action="store_true",
                   help="with --script: print the chat as one memlab-chat/2 JSON document (without the agent state)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    from engine.backbones.server import add_server_args

    add_server_args(p)
    p.set_defaults(func=run)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _default_lm() -> str:
    from engine.backbones.embedded import check_prepared, default_lm_path
    from engine.backbones.types import ModelNotFoundError

    ok, why = check_prepared()
    if not ok:
        raise ModelNotFoundError(f"the embedded default generator is not prepared ({why}); "
                                 "run `memlab models prepare` or pass --lm")
    return str(default_lm_path())


def resolve_adapter(adapter: str | None, lm: str | None) -> str | None:
    """``auto`` → the default EMMA adapter when the generator is the embedded default (said on stderr)."""
    if adapter in (None, "", "none"):
        return None
    if adapter != "auto":
        return adapter
    if lm:
        return None
    from engine.systems.emma.paths import find_default_adapter

    path, why = find_default_adapter()
    _err(f"adapter: {why}")
    return str(path) if path else None


def parse_options(pairs: list[str]) -> dict:
    """``["k=5", ...]`` → ``{"k": "5"}`` (the record coerces the values); a malformed pair is an error."""
    out = {}
    for pair in pairs or []:
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"--set {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def build_agent(args):
    """Load the models the system's record needs (defaults: the embedded pair) and build the agent."""
    from engine.backbones.embedded import default_encoder_path
    from engine.backbones.loading import load_encoder, load_lm
    from engine.systems.generation import GenerationSettings

    from engine.systems.emma.presets import get as get_preset

    record = registry.get(args.agent)
    raw = parse_options(getattr(args, "set", []))
    preset = get_preset(getattr(args, "preset", None) or "embedded")
    if any(o.name == "preset" for o in record.options):
        raw.setdefault("preset", preset.name)
    options = record.validate(raw)
    models = registry.Models(settings=GenerationSettings(max_new_tokens=args.max_new_tokens,
                                                         do_sample=not args.greedy, seed=args.seed))
    lm_id = args.lm or preset.backbone
    if "generator" in record.needs:
        import torch

        four_bit = preset.quantize_4bit_on_cuda and torch.cuda.is_available() and args.device != "cpu"
        from engine.backbones.server import server_options

        server = server_options(args)
        if server:
            from engine.backbones.loading import connect_lm

            models.generator = connect_lm(tokenizer_source=lm_id or _default_lm(), **server)
        else:
            models.generator = load_lm(lm_id or _default_lm(), adapter=resolve_adapter(args.adapter, lm_id),
                                       device=args.device, quantize_4bit=four_bit)
        lm = models.generator
        _err(f"generator: {lm.name} ({lm.kind}) on {lm.where}")
        for r in lm.plan.reasons:
            _err(f"  - {r}")
    if "encoder" in record.needs:
        base = args.encoder or preset.encoder or str(default_encoder_path())
        if args.retriever:
            from engine.systems.emma.retriever import load_retriever_checkpoint

            models.components["retriever"] = load_retriever_checkpoint(args.retriever, base, device=args.device)
            _err(f"retriever: {args.retriever} on the {base} architecture")
        else:
            models.encoder = load_encoder(base, device=args.device, pooling=preset.pooling if not args.encoder else None)
            _err(f"encoder: {models.encoder.name} ({models.encoder.pooling} pooling) on {models.encoder.plan.summary()}")
            if preset.memory_encoder and not args.encoder:  # the paper: a second, separate memory encoder
                models.components["memory_encoder"] = load_encoder(preset.memory_encoder, device=args.device,
                                                                   pooling=preset.pooling)
    agent = registry.build_agent(record.name, models, **options)
    d = agent.describe()
    if d.get("label"):
        _err(f"system: {d['label']} (preset {preset.name})")
        for key in ("retriever_note", "linker", "link_threshold_source", "grounding"):
            if d.get(key):
                _err(f"  - {key.replace('_', ' ')}: {d[key]}")
    return agent


def _print_update(update, out) -> None:
    if update is None:
        return
    print(f"— session ended: {len(update.memories)} memories, {len(update.links)} links stored", file=out)
    for m in update.memories:
        print(f"  [{m.id}] about {m.about}: {m.text}", file=out)
    for l in update.links:
        print(f"  {l.src} → {l.dst} ({l.kind})", file=out)
    for r in getattr(update, "rejected", []) or []:
        print(f"  not stored (about {r['about']}): {r['text']} — {r['reason']}", file=out)
    for n in update.notes:
        print(f"  · {n}", file=out)


def _print_memory(chat, out) -> None:
    snap = chat.agent.memory_view()
    if not snap["memories"]:
        print("(no memories stored)", file=out)
    for m in snap["memories"]:
        print(f"  [{m['id']}] about {m['about']} (session {m['session'] + 1}): {m['text']}", file=out)
    for l in snap["links"]:
        print(f"  {l['src']} → {l['dst']} ({l['kind']})", file=out)


def _progress(stage, done, total):
    _err(f"  … {stage}")


def _handle(chat, line: str, out, *, stream: bool) -> str | None:
    """Run one input line; returns "quit" to stop."""
    from engine.chat.session import ChatSession  # noqa: F401

    if line.startswith("/"):
        cmd, _, arg = line.partition(" ")
        arg = arg.strip()
        if cmd == "/quit":
            return "quit"
        if cmd == "/partner":
            partner = Speaker.parse(arg)
            _print_update(chat.set_partner(partner, _progress), out)
            print(f"— session {chat.index + 1} with {partner.label()}", file=out)
        elif cmd == "/memory":
            _print_memory(chat, out)
        elif cmd == "/save":
            if not arg:
                raise ValueError("/save needs a FILE")
            chat.save(arg)
            print(f"— saved to {arg}", file=out)
        else:
            raise ValueError(f"unknown command {cmd!r} (use /partner NAME:JOB, /memory, /save FILE, /quit)")
        return None
    if stream:
        print(f"{chat.main.name}: ", end="", file=out, flush=True)
        chat.say(line, on_token=lambda p: print(p, end="", file=out, flush=True))
        print(file=out)
        mem = chat.current.turns[-1].memories
        if mem:
            print("  (memories given: " + "; ".join(m["id"] for m in mem) + ")", file=out)
    else:
        chat.say(line)
    return None


def run(args) -> int:
    from engine.backbones.types import ModelNotFoundError
    from engine.chat.session import ChatSession

    if args.json and not args.script:
        _err("--json needs --script FILE")
        return 2
    try:
        main = Speaker.parse(args.main)
        first = Speaker.parse(args.partner) if args.partner else None
    except ValueError as e:
        _err(f"error: {e}")
        return 2
    lines = None
    if args.script:
        try:
            lines = Path(args.script).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            _err(f"error: cannot read script {args.script}: {e}")
            return 2
    from engine.backbones.server import ServerError

    try:
        agent = build_agent(args)
    except (ModelNotFoundError, ServerError, ValueError) as e:
        _err(f"error: {e}")
        return 1
    try:
        chat = ChatSession.resume(agent, args.resume) if args.resume else ChatSession(agent, main)
    except ValueError as e:
        _err(f"error: {e}")
        return 2
    if first is not None:
        _print_update(chat.set_partner(first, _progress), sys.stderr if args.json else sys.stdout)

    if lines is not None:
        out = sys.stderr if args.json else sys.stdout
        for n, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if _handle(chat, line, out, stream=not args.json) == "quit":
                    break
            except (ValueError, RuntimeError) as e:
                _err(f"error: {args.script}, line {n}: {e}")
                return 2
        chat.end_session(_progress)
        if args.json:  # the memlab-chat/2 document without the agent state (/save keeps that), plus the models
            doc = {k: v for k, v in chat.doc.to_dict().items() if k != "agent_state"}
            doc["models"] = agent.describe()
            json.dump(doc, sys.stdout, ensure_ascii=False, indent=1)
            print()
        return 0

    print(f"Chatting with {agent.name} as {chat.main.label()}. /partner NAME:JOB, /memory, /save FILE, /quit")
    if chat.partner is None or chat.current is None:
        print("Start with /partner NAME:JOB.")
    while True:
        try:
            line = input(f"{chat.partner.name if chat.partner else '?'}> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            break
        if not line:
            continue
        try:
            if _handle(chat, line, sys.stdout, stream=True) == "quit":
                break
        except (ValueError, RuntimeError) as e:
            print(f"error: {e}")
    _print_update(chat.end_session(_progress), sys.stdout)
    return 0
