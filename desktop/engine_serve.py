"""``memlab engine serve``: the engine for apps on other machines (:mod:`desktop.remote_engine`)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from desktop.remote_engine import DEFAULT_PORT, EngineServer, load_or_create_token


def default_token_file() -> Path:
    from desktop.context import default_data_dir

    return default_data_dir() / "engine-token"


def cmd_serve(args) -> int:
    from desktop.context import engine_installed

    if not engine_installed():
        print("error: this MemLab has no engine (the annotator edition); install the full app to serve one",
              file=sys.stderr)
        return 2
    token_file = Path(args.token_file) if args.token_file else default_token_file()
    token = os.environ.get("MEMLAB_ENGINE_TOKEN") or load_or_create_token(token_file)
    config = {"lm": args.lm or "", "encoder": args.encoder or "", "generator_adapter": args.adapter or "",
              "retriever": args.retriever or "", "load_in_4bit": bool(args.load_in_4bit)}
    try:
        server = EngineServer(args.host, args.port, token, config)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}, not only this machine: anyone who can reach the port may try "
              "the token, and the traffic is not encrypted (prefer an SSH tunnel)", file=sys.stderr)
    print(f"memlab engine listening on {server.url}", flush=True)
    print(f"token: {token}" + ("" if os.environ.get("MEMLAB_ENGINE_TOKEN") else f"   (stored in {token_file})"),
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server._stop.set())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def register(sub) -> None:
    """``memlab engine serve``."""
    engine = sub.add_parser("engine", help="run the engine for apps on other machines")
    es = engine.add_subparsers(dest="engine_command", metavar="ACTION", required=True)
    p = es.add_parser("serve", help="serve the engine worker protocol over TCP with a per-server token")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free one)")
    p.add_argument("--token-file", help="where the token is kept (default: the MemLab data dir's engine-token); "
                                        "MEMLAB_ENGINE_TOKEN overrides it")
    p.add_argument("--lm", help="generator: Hugging Face id or directory (default: embedded SmolLM2 + EMMA adapter)")
    p.add_argument("--encoder", help="encoder: id or directory (default: embedded MiniLM)")
    p.add_argument("--adapter", help="LoRA adapter on the generator")
    p.add_argument("--retriever", help="published EMMA retriever checkpoint (.safetensors)")
    p.add_argument("--load-in-4bit", action="store_true", help="4-bit NF4 generator (CUDA only)")
    p.set_defaults(func=cmd_serve)
    from engine import serving_cli

    serving_cli.register(es)
