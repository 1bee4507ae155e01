"""The OpenAI-compatible server generator backend (docs/architecture.md, "Generator backends").

A :class:`LoadedLM` whose ``backend`` is an :class:`OpenAIServerBackend` generates on a server that speaks the
OpenAI completions API — **vLLM** (``vllm serve BASE --enable-lora --lora-modules emma=DIR ...``) on a GPU
machine, or **llama.cpp** through ``llama-cpp-python``'s server on CPU (the tests' real server,
:mod:`engine.backbones.llama_cpp_server`). The client is the ``openai`` package.

What goes over the wire:

* **Prompts as text** — rendered locally with the same tokenizer and chat template as the in-process path
  (:func:`engine.systems.generation.render_prompt`), sent to ``/v1/completions``; replies stream.
* **LoRA per request** — the request's ``model`` is the adapter's served name (vLLM serves each
  ``--lora-modules NAME=DIR`` and each adapter loaded at run time through ``/v1/load_lora_adapter`` under
  its name), the base model's name when no adapter applies. :meth:`OpenAIServerBackend.load_adapter`
  registers a new one (MiLP's per-partner adapters) where the server allows it.
* **Label log-probabilities** (EMMA §4.1 linker: ``positive``/``negative``), exact: first one request per
  prompt with ``max_tokens=1, temperature=0, logprobs=K`` — a label token among the top K alternatives is
  read off exactly (a longer label token by token, each token a request on the prompt extended by the
  label's earlier tokens); a label outside the top K is scored by *echo*: ``prompt + label`` with
  ``echo=True, logprobs=1``, the label's tokens found at the end of the echoed tokens and their
  log-probabilities summed, as the in-process path computes them. ``stats`` says how many took which
  way. (Echo is slow on llama.cpp's Python server — it sorts the vocabulary at every prompt token — and
  fast on vLLM; a server refusing echo leaves the K-th log-probability as an upper bound, counted in
  ``stats["upper_bounds"]``.)
* **Batches as concurrent requests** — :meth:`complete_many` and :meth:`score_labels` keep up to
  ``max_in_flight`` requests in flight (a thread pool; the server batches them) and report
  ``progress(done, total, in_flight)``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .types import ModelNotFoundError

#: ``progress(done, total, in_flight)``
BatchProgress = Callable[[int, int, int], None]

DEFAULT_TOP_K = 20  # vLLM's default --max-logprobs is 20
#: prompts arrive with the chat template's special tokens already in the text (as in process): vLLM must not
#: add a BOS of its own (llama.cpp's server ignores the field and adds one only where the GGUF asks)
NO_SPECIAL = {"add_special_tokens": False}


class ServerError(RuntimeError):
    """The server refused or failed a request; the message names the server and what was asked. ``status``
    is the HTTP status when the server answered with one (None: unreachable, timed out, cut off)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class ServerSpec:
    """How to reach an OpenAI-compatible server: ``url`` is the API root (``http://127.0.0.1:8000/v1``);
    ``model`` the served base model's name (None: the first one ``/v1/models`` lists)."""

    url: str
    model: str | None = None
    api_key: str | None = None
    max_in_flight: int = 8
    timeout_s: float = 300.0
    top_k: int = DEFAULT_TOP_K
    context: int | None = None  # the served context length when known (vLLM lists it; llama.cpp's n_ctx)

    @classmethod
    def parse(cls, url: str, **kw) -> "ServerSpec":
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"generator server URL must start with http:// or https://, got {url!r}")
        if not url.endswith("/v1"):
            url += "/v1"
        return cls(url=url, **{k: v for k, v in kw.items() if v is not None})


def _sampling(settings, *, n: int = 1) -> dict:
    """GenerationSettings → completion request fields. Greedy = temperature 0. The repetition penalty goes
    under both servers' names (vLLM ``repetition_penalty``, llama.cpp ``repeat_penalty``); each ignores the
    other's."""
    kw: dict = {"max_tokens": int(settings.max_new_tokens)}
    if settings.do_sample:
        kw.update(temperature=float(settings.temperature), top_p=float(settings.top_p))
    else:
        kw.update(temperature=0.0, top_p=1.0)
    if settings.seed is not None:
        kw["seed"] = int(settings.seed)
    if n > 1:
        kw["n"] = n
    extra = {"repetition_penalty": float(settings.repetition_penalty),
             "repeat_penalty": float(settings.repetition_penalty), **NO_SPECIAL}
    if settings.min_new_tokens:
        extra["min_tokens"] = int(settings.min_new_tokens)
    return kw | {"extra_body": extra}


class OpenAIServerBackend:
    """:class:`engine.backbones.types.GeneratorBackend` on an OpenAI-compatible server (module docstring)."""

    def __init__(self, spec: ServerSpec):
        try:
            import openai
        except ImportError as e:  # an optional dependency
            raise ModelNotFoundError("the server backend needs the 'openai' package: pip install openai") from e
        self.spec = spec
        self._openai = openai
        self.client = openai.OpenAI(base_url=spec.url, api_key=spec.api_key or "EMPTY",
                                    timeout=spec.timeout_s, max_retries=1)
        self.requests = 0  # requests sent (for reports)
        self.max_in_flight = max(1, int(spec.max_in_flight))
        # one cap for every request of this backend, however many pools and agents send them (eval compare's
        # concurrent queries each score labels concurrently): never more than max_in_flight at the server
        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._count_lock = threading.Lock()
        self.model = spec.model or self._first_model()
        self.context = spec.context or self._served_context()
        self.adapters: dict[str, str] = {}  # adapters registered through load_adapter: name -> directory
        self.echo_ok = True  # False for good once the server refuses echo (score_labels)

    # ------------------------------------------------------------------ plumbing
    @property
    def where(self) -> str:
        return f"OpenAI-compatible server {self.spec.url} (model {self.model}, up to {self.max_in_flight} in flight)"

    def describe(self) -> dict:
        return {"backend": "openai-server", "url": self.spec.url, "served_model": self.model,
                "max_in_flight": self.max_in_flight}

    def _count(self) -> None:
        with self._count_lock:
            self.requests += 1

    def _error(self, what: str, e: BaseException) -> ServerError:
        if isinstance(e, ServerError):
            return e
        if isinstance(e, self._openai.APIStatusError):
            return ServerError(f"generator server {self.spec.url} refused {what}: HTTP {e.status_code} "
                               f"{getattr(e, 'message', e)}", e.status_code)
        if isinstance(e, self._openai.APIConnectionError):
            return ServerError(f"generator server {self.spec.url} unreachable during {what}: {e}")
        return ServerError(f"generator server {self.spec.url} failed during {what}: {type(e).__name__}: {e}")

    def _call(self, what: str, fn, *a, **kw):
        with self._slots:
            self._count()
            try:
                return fn(*a, **kw)
            except Exception as e:  # noqa: BLE001 — every client error becomes a located ServerError
                raise self._error(what, e) from e

    def models(self) -> list[str]:
        page = self._call("listing models", self.client.models.list)
        return [m.id for m in page.data]

    def _served_context(self) -> int | None:
        """The served model's context length where the server lists it (vLLM: ``max_model_len``)."""
        try:
            page = self._call("listing models", self.client.models.list)
        except ServerError:
            return None
        for m in page.data:
            if m.id == self.model:
                n = getattr(m, "max_model_len", None) or (getattr(m, "model_extra", None) or {}).get("max_model_len")
                return int(n) if isinstance(n, (int, float)) and n > 0 else None
        return None

    def _first_model(self) -> str:
        names = self.models()
        if not names:
            raise ServerError(f"generator server {self.spec.url} serves no model")
        return names[0]

    def _model_for(self, adapter: str | None) -> str:
        return adapter or self.model

    # ------------------------------------------------------------------ generation
    def stream(self, prompt: str, settings, cancel: threading.Event | None = None,
               adapter: str | None = None) -> Iterator[str]:
        """Yield text pieces as the server streams them; ``cancel`` closes the stream at the next piece and
        raises :class:`engine.agent.Cancelled` (imported lazily: the contract module is torch-free)."""
        from engine.agent import Cancelled

        with self._slots:  # a stream holds its slot until it ends
            self._count()
            what = "a streamed completion"
            try:
                stream = self.client.completions.create(model=self._model_for(adapter), prompt=prompt, stream=True,
                                                        **_sampling(settings))
            except Exception as e:  # noqa: BLE001
                raise self._error(what, e) from e
            try:
                for chunk in stream:
                    if cancel is not None and cancel.is_set():
                        break
                    if chunk.choices and chunk.choices[0].text:
                        yield chunk.choices[0].text
            except GeneratorExit:
                raise
            except Exception as e:  # noqa: BLE001 — an error event or a cut connection mid-stream
                raise self._error(what, e) from e
            finally:
                stream.close()
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation cancelled")

    def complete(self, prompt: str, settings, adapter: str | None = None, n: int = 1) -> list[str]:
        resp = self._call("a completion", self.client.completions.create, model=self._model_for(adapter),
                          prompt=prompt, stream=False, **_sampling(settings, n=n))
        return [c.text.strip() for c in sorted(resp.choices, key=lambda c: c.index)]

    def sample(self, prompt: str, n: int, settings, cancel: threading.Event | None = None,
               adapter: str | None = None) -> list[str]:
        """``n`` sampled continuations: one request with ``n`` (vLLM); a server that returns fewer choices
        (llama.cpp's returns one) gets the rest as concurrent single requests, each with its own seed."""
        import dataclasses

        from engine.agent import Cancelled

        if n < 1:
            return []
        settings = dataclasses.replace(settings, do_sample=True)
        out = self.complete(prompt, settings, adapter, n=n)[:n]
        if len(out) < n:
            base = settings.seed if settings.seed is not None else int(time.time() * 1000) % 2**31
            more = [dataclasses.replace(settings, seed=base + 1 + i) for i in range(n - len(out))]
            out += self._pool(lambda s: self.complete(prompt, s, adapter)[0], more, cancel, None)
        if cancel is not None and cancel.is_set():
            raise Cancelled("sampling cancelled")
        return out

    def complete_many(self, prompts: list[str], settings, cancel: threading.Event | None = None,
                      adapter: str | None = None, progress: BatchProgress | None = None) -> list[str]:
        """One completion per prompt, up to ``max_in_flight`` concurrent requests, in the prompts' order."""
        return self._pool(lambda p: self.complete(p, settings, adapter)[0], list(prompts), cancel, progress)

    # ------------------------------------------------------------------ label scoring
    def continuation_logprobs(self, prompts: list[str], answers: list[str], adapter: str | None = None,
                              progress: BatchProgress | None = None,
                              cancel: threading.Event | None = None) -> list[tuple[float, int]]:
        """(sum of log-probabilities, number of tokens) of each ``answers[i]`` as the continuation of
        ``prompts[i]`` (teacher forcing, by echo), concurrently. Raises :class:`ServerError` when the server
        cannot echo prompt log-probabilities."""
        def one(pa):
            got = self._echo(pa[0], pa[1], adapter)
            if got is None:
                raise ServerError(f"generator server {self.spec.url}: the echoed tokens do not end with the "
                                  f"answer {pa[1][:40]!r} (no prompt log-probabilities?)")
            return got

        return self._pool(one, list(zip(prompts, answers)), cancel, progress)

    def _echo_logprob(self, prompt: str, pieces: list[str], adapter: str | None) -> float | None:
        got = self._echo(prompt, "".join(pieces), adapter)
        return None if got is None else got[0]

    def _echo(self, prompt: str, label: str, adapter: str | None) -> tuple[float, int] | None:
        """(sum, count) of the log-probabilities of ``label``'s tokens from an echoed completion of ``prompt
        + label``; None when the echoed tokens do not end with ``label`` (another tokenisation)."""
        resp = self._call("label log-probabilities (echo)", self.client.completions.create,
                          model=self._model_for(adapter), prompt=prompt + label, max_tokens=1, temperature=0.0,
                          echo=True, logprobs=1, stream=False, extra_body=NO_SPECIAL)
        lp = resp.choices[0].logprobs
        tokens = list(getattr(lp, "tokens", None) or [])
        values = list(getattr(lp, "token_logprobs", None) or [])
        # the label's tokens end the prompt; at most the one generated token follows them
        for end in (len(tokens) - 1, len(tokens)):
            joined = ""
            for n in range(1, end + 1):
                joined = tokens[end - n] + joined
                if len(joined) > len(label) + 8:
                    break
                if joined == label:
                    got = values[end - n:end]
                    if any(v is None for v in got):
                        return None
                    return float(sum(got)), n
        return None

    def _top_logprobs(self, prompt: str, adapter: str | None) -> dict[str, float]:
        resp = self._call("label log-probabilities", self.client.completions.create,
                          model=self._model_for(adapter), prompt=prompt, max_tokens=1, temperature=0.0,
                          logprobs=self.spec.top_k, stream=False, extra_body=NO_SPECIAL)
        lp = resp.choices[0].logprobs
        tops = getattr(lp, "top_logprobs", None) if lp is not None else None
        if not tops or tops[0] is None:
            raise ServerError(f"generator server {self.spec.url} returned no log-probabilities "
                              "(llama.cpp: start it with logits_all; vLLM: raise --max-logprobs)")
        return {str(k): float(v) for k, v in dict(tops[0]).items()}

    def _label_logprob(self, prompt: str, pieces: list[str], adapter: str | None, info: dict, lock) -> float:
        total, ctx = 0.0, prompt
        for piece in pieces:
            tops = self._top_logprobs(ctx, adapter)
            with lock:
                info["requests"] += 1
            if piece not in tops:
                break
            total += tops[piece]
            ctx += piece
        else:
            with lock:
                info["top_k"] += 1
            return total
        value = None
        if self.echo_ok:
            try:
                value = self._echo_logprob(prompt, pieces, adapter)
            except ServerError as e:
                if e.status is None or not 400 <= e.status < 500:
                    raise  # a timeout or a cut connection is an error, not a server without echo
                self.echo_ok = False
            with lock:
                info["requests"] += 1
        if value is not None:
            with lock:
                info["echo"] += 1
            return value
        with lock:
            info["upper_bounds"] += 1
        return total + (min(tops.values()) if tops else -1e9)

    def score_labels(self, prompts: list[str], label_pieces: list[list[str]], adapter: str | None = None,
                     stats: dict | None = None, progress: BatchProgress | None = None,
                     cancel: threading.Event | None = None) -> np.ndarray:
        """Log-probability of each label (given as its token strings, from the local tokenizer) after each
        prompt: ``(len(prompts), len(labels))`` — from the top-K alternatives, else by echo (module
        docstring). Requests for different prompts run concurrently (up to ``max_in_flight``)."""
        info = {"requests": 0, "top_k": 0, "echo": 0, "upper_bounds": 0, "k": self.spec.top_k,
                "in_flight": self.max_in_flight}
        lock = threading.Lock()

        def one(prompt: str) -> list[float]:
            return [self._label_logprob(prompt, pieces, adapter, info, lock) for pieces in label_pieces]

        rows = self._pool(one, list(prompts), cancel, progress)
        if stats is not None:
            stats.update(info)
        return np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(label_pieces))

    # ------------------------------------------------------------------ adapters (LoRA per request)
    def load_adapter(self, name: str, directory: str) -> None:
        """Register a peft LoRA directory under ``name`` on the server (vLLM's ``/v1/load_lora_adapter``,
        allowed when the server runs with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; the directory must be
        readable by the server). Later requests for ``name`` use it."""
        import json
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.spec.url + "/load_lora_adapter", method="POST",
                                     data=json.dumps({"lora_name": name, "lora_path": str(directory)}).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.spec.api_key or 'EMPTY'}"})
        hint = (f"start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or serve the adapter "
                f"at start-up (--lora-modules {name}={directory})")
        try:
            self._count()
            with self._slots, urllib.request.urlopen(req, timeout=self.spec.timeout_s) as r:
                r.read()
        except urllib.error.HTTPError as e:
            raise ServerError(f"generator server {self.spec.url} refused loading adapter {name!r}: HTTP {e.code} "
                              f"— {hint}", e.code) from e
        except OSError as e:
            raise ServerError(f"generator server {self.spec.url} unreachable while loading adapter {name!r}: {e}") from e
        self.adapters[name] = str(directory)

    # ------------------------------------------------------------------ concurrency
    def _pool(self, fn, items: list, cancel: threading.Event | None, progress: BatchProgress | None) -> list:
        """``fn`` over ``items`` with up to ``max_in_flight`` running; results in order; the first error is
        raised; ``cancel`` stops submitting (and raises Cancelled)."""
        from engine.agent import Cancelled

        results: list = [None] * len(items)
        if not items:
            return results
        done = 0
        with ThreadPoolExecutor(max_workers=min(self.max_in_flight, len(items)),
                                thread_name_prefix="memlab-server") as ex:
            pending: dict = {}
            queue = list(enumerate(items))
            queue.reverse()
            while queue or pending:
                while queue and len(pending) < self.max_in_flight and not (cancel and cancel.is_set()):
                    i, item = queue.pop()
                    pending[ex.submit(fn, item)] = i
                if not pending:
                    break
                finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for f in finished:
                    i = pending.pop(f)
                    results[i] = f.result()  # re-raises the request's error
                    done += 1
                if progress:
                    progress(done, len(items), len(pending))
        if cancel is not None and cancel.is_set() and done < len(items):
            raise Cancelled("batched requests cancelled")
        return results


# ---------------------------------------------------------------------- command-line options (torch-free)
def add_server_args(p) -> None:
    """``--generator-url`` and friends on a command that loads a generator (chat, eval compare, selfplay)."""
    import os

    g = p.add_argument_group("generator server (instead of loading the generator in this process)")
    g.add_argument("--generator-url", default=os.environ.get("MEMLAB_GENERATOR_URL") or None,
                   help="OpenAI-compatible server (vLLM, llama.cpp), e.g. http://127.0.0.1:8000/v1; --lm then names "
                        "the served model's tokenizer (default: the embedded SmolLM2). Env MEMLAB_GENERATOR_URL; "
                        "the API key, if any, from MEMLAB_GENERATOR_KEY")
    g.add_argument("--served-model", help="the base model's name on the server (default: the first it lists)")
    g.add_argument("--served-adapter", help="LoRA the server applies per request, by its served name "
                                            "(vLLM --lora-modules NAME=DIR)")
    g.add_argument("--in-flight", type=int, default=8, help="concurrent requests at most (default 8)")
    g.add_argument("--served-context", type=int, help="the server's context length in tokens (default: what it "
                                                      "lists, else the model's; llama.cpp: its n_ctx)")


def server_options(args) -> dict | None:
    """The ``connect_lm`` keyword arguments from :func:`add_server_args` options, or None (in process)."""
    import os

    url = getattr(args, "generator_url", None)
    if not url:
        return None
    return {"url": url, "served_model": getattr(args, "served_model", None),
            "adapter": getattr(args, "served_adapter", None), "api_key": os.environ.get("MEMLAB_GENERATOR_KEY"),
            "max_in_flight": getattr(args, "in_flight", 8) or 8, "context": getattr(args, "served_context", None)}
