"""The engine worker: a separate process that loads the models and runs the agents.

The desktop app never runs model code in its own process ("never block the UI"; a worker crash or
out-of-memory ends the turn, not the app). The parent starts ``python -m desktop.engine_worker FD`` and talks to
:func:`worker_main` over a socket pair with ``multiprocessing.connection``.  The messages are the typed,
versioned dataclasses of :mod:`engine.protocol` (plain dicts on the wire); docs/architecture.md, "The engine
worker protocol", describes them.  Each ``op_<name>`` method below handles one request class.

The worker holds the models of the roles the created agents' registry records need (``generator``,
``encoder``), loaded once and shared by every agent (the Compare page runs several agents on one generator).
An exception inside a request becomes an ``Error`` reply; the worker keeps running. Out-of-memory errors are
reported as such.

This module imports no torch at import time; the engine is imported inside the handlers.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import traceback

from engine import protocol


def _speaker(d):
    from engine.data.model import Speaker

    return Speaker(str(d.get("name", "")), str(d.get("job", "")))


def _plan_dict(plan) -> dict:
    if plan is None:
        return {}
    return {"device": getattr(plan, "device", "?"), "dtype": getattr(plan, "dtype", "?"),
            "load_in_4bit": bool(getattr(plan, "load_in_4bit", False)),
            "reasons": list(getattr(plan, "reasons", []) or [])}


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class _Worker:
    def __init__(self, conn, config: dict):
        self.conn = conn
        self.config = dict(config)
        self.lm = None  # the generator role (engine.systems.registry.ROLES), shared by every agent
        self.encoder = None  # the encoder role, loaded when a system's record needs it
        self.retriever = None  # the published retriever checkpoint (a "retriever" component), when configured
        self.warmed = False  # the first-use warm-up ran (op_load)
        self.shared_models: dict = {}  # what systems load themselves (Models.shared), kept across agents
        self.agents: dict = {}
        self.cancels: dict[str, tuple[int, threading.Event]] = {}  # agent → (respond request id, event)
        self.cancelled_requests: set = set()
        self.inbox: queue.Queue = queue.Queue()
        self.send_lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------
    def send(self, msg: dict) -> None:
        with self.send_lock:
            self.conn.send(msg)

    def reader(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                self.inbox.put(protocol.Shutdown(id=-1))
                return
            try:
                req = protocol.parse_request(msg)
            except protocol.ProtocolError as e:
                rid = msg.get("id", 0) if isinstance(msg, dict) else 0
                op = msg.get("op", "") if isinstance(msg, dict) else ""
                self.send(protocol.Error(id=rid if isinstance(rid, int) else 0, op=str(op), message=str(e)).to_wire())
                continue
            if isinstance(req, protocol.Cancel):
                # cancel names the respond request it stops: one that has not started yet is
                # cancelled when it starts, and a late cancel cannot stop the next turn
                with self.send_lock:
                    self.cancelled_requests.add(req.request)
                    current = self.cancels.get(req.agent)
                if current is not None and current[0] == req.request:
                    current[1].set()
                continue
            self.inbox.put(req)
            if isinstance(req, protocol.Shutdown):
                return

    def run(self) -> None:
        threading.Thread(target=self.reader, daemon=True, name="memlab-worker-reader").start()
        self.send(protocol.Hello(pid=os.getpid()).to_wire())
        while True:
            req = self.inbox.get()
            op, rid = req.op, req.id
            if op == "shutdown":
                return
            handler = getattr(self, "op_" + op, None)
            if handler is None:
                self.send(protocol.Error(id=rid, op=op, message=f"request {op!r} is not handled by this worker").to_wire())
                continue
            try:
                result = _plain(handler(req, rid))
                self.send(protocol.Result(id=rid, op=op, result=result).to_wire())
            except Exception as exc:  # noqa: BLE001 — every failure goes back as a message
                if _is_oom(exc):
                    message = f"out of memory during {op}: {exc}. The turn was stopped; free memory or use a smaller model."
                    self._free_cuda()
                else:
                    message = f"{type(exc).__name__}: {exc}"
                self.send(protocol.Error(id=rid, op=op, message=message,
                                         traceback=traceback.format_exc(limit=6)).to_wire())

    def progress(self, rid):
        def report(*args, **kw):
            # Accepts progress(done, total), progress(label, done, total) or progress(fraction).
            label, done, total = kw.get("label", ""), kw.get("done", 0), kw.get("total", 0)
            nums = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
            strs = [a for a in args if isinstance(a, str)]
            if strs:
                label = strs[0]
            if len(nums) >= 2:
                done, total = nums[0], nums[1]
            elif len(nums) == 1:
                done, total = (nums[0] * 1000, 1000) if nums[0] <= 1 else (nums[0], 0)
            self.send(protocol.Progress(id=rid, label=str(label), done=float(done), total=float(total)).to_wire())

        return report

    @staticmethod
    def _free_cuda():
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def agent(self, req):
        name = req.agent
        if name not in self.agents:
            raise KeyError(f"no agent {name!r} in the engine worker (create it first)")
        return self.agents[name]

    # -- requests ----------------------------------------------------------------------------
    def op_ping(self, req, rid):
        return {"pid": os.getpid()}

    def op_crash(self, req, rid):
        """Test hook: die the way a native crash would (no cleanup, no reply)."""
        os._exit(int(req.code))

    def op_set_config(self, req, rid):
        new = dict(req.config)
        if any(new.get(k) != self.config.get(k)
               for k in ("lm", "encoder", "load_in_4bit", "generator_adapter", "retriever", "generator_url",
                         "served_model", "served_adapter")):
            self.lm = self.encoder = self.retriever = None
            self.warmed = False
            self.shared_models.clear()
            self.agents.clear()
        self.config = new
        return self.op_info(req, rid)

    def op_info(self, req, rid):
        import importlib.util

        import socket

        info = {"pid": os.getpid(), "host": socket.gethostname(), "python": sys.version.split()[0], "torch": None, "cuda": False,
                "gpu": "", "bitsandbytes": importlib.util.find_spec("bitsandbytes") is not None,
                "config": self.config, "lm": None, "encoder": None, "defaults": {}, "agents": sorted(self.agents)}
        try:
            import torch

            info["torch"] = str(torch.__version__)
            info["cuda"] = bool(torch.cuda.is_available())
            if info["cuda"]:
                info["gpu"] = torch.cuda.get_device_name(0)
        except ImportError:
            pass
        for label, loaded in (("lm", self.lm), ("encoder", self.encoder)):
            if loaded is not None:
                info[label] = {"name": getattr(loaded, "name", ""), "kind": getattr(loaded, "kind", ""),
                               "plan": _plan_dict(getattr(loaded, "plan", None))}
                backend = getattr(loaded, "backend", None)
                if backend is not None:
                    info[label]["server"] = backend.describe() | {"where": backend.where}
        try:
            from engine.backbones import embedded

            info["defaults"] = embedded.default_status()
        except Exception as exc:  # noqa: BLE001 — shown on the Models page
            info["defaults"] = {"error": f"{type(exc).__name__}: {exc}"}
        return info

    def op_load(self, req, rid):
        """Load the models of the roles in ``needs`` (default: generator and encoder) that are not loaded yet."""
        from engine.backbones import embedded, loading

        needs = set(req.needs or ("generator", "encoder"))
        report = self.progress(rid)
        lm_id = self.config.get("lm") or ""
        enc_id = self.config.get("encoder") or str(embedded.default_encoder_path())
        adapter, adapter_note = self.config.get("generator_adapter") or None, None
        if "generator" in needs and self.lm is None:
            if not lm_id:  # the embedded default generator gets the default EMMA adapter (said in the reasons)
                lm_id = str(embedded.default_lm_path())
                if adapter is None:
                    from engine.systems.emma.paths import find_default_adapter

                    found, adapter_note = find_default_adapter()
                    adapter = str(found) if found else None
            url = self.config.get("generator_url") or os.environ.get("MEMLAB_GENERATOR_URL") or ""
            if url:  # generation on an OpenAI-compatible server (vLLM, llama.cpp); the tokenizer loads here
                report("connecting to the generator server " + url, 0, 3)
                self.lm = loading.connect_lm(url, lm_id, served_model=self.config.get("served_model") or None,
                                             adapter=self.config.get("served_adapter") or None,
                                             api_key=os.environ.get("MEMLAB_GENERATOR_KEY"),
                                             max_in_flight=int(self.config.get("in_flight") or 8))
                if adapter:
                    self.lm.plan.reasons.append(
                        f"generator adapter {adapter} not loaded here: on a server the adapter is the one it serves "
                        f"under the 'served adapter' name ({self.config.get('served_adapter') or 'none set'})")
            else:
                report("loading language model " + os.path.basename(lm_id.rstrip("/")), 0, 3)
                self.lm = loading.load_lm(lm_id, quantize_4bit=bool(self.config.get("load_in_4bit")), adapter=adapter)
                if adapter_note:
                    self.lm.plan.reasons.append(adapter_note)
        if "encoder" in needs and self.encoder is None:
            report("loading encoder " + os.path.basename(enc_id.rstrip("/")), 1, 3)
            self.encoder = loading.load_encoder(enc_id)
        if "encoder" in needs and self.retriever is None and self.config.get("retriever"):
            from engine.systems.emma.retriever import load_retriever_checkpoint

            report("loading retriever checkpoint", 2, 3)
            self.retriever = load_retriever_checkpoint(self.config["retriever"], enc_id)
        if not self.warmed:
            report("warming up the models (first-use costs out of the first reply)", 3, 4)
            self._warm_up()
        report("models loaded", 4, 4)
        return self.op_info(req, rid)

    def _warm_up(self) -> None:
        """One 2-token generation and one encoding right after loading, so that the one-time costs of a
        model's first call (lazy kernel and chat-template set-up, weights paged in) are paid here, with a
        progress line, and not by the first reply of the first session."""
        from engine.systems import generation as gen

        if self.lm is not None:
            prompt = gen.render_prompt(self.lm, "generation: [NOW] first session [A] Hi! [B]",
                                       [{"role": "user", "content": "Hi!"}])
            gen.generate_text(self.lm, prompt, gen.GenerationSettings(max_new_tokens=2, do_sample=False))
        if self.encoder is not None:
            from engine.backbones.loading import encode

            encode(self.encoder, ["warm-up sentence"], max_length=32)
        self.warmed = self.lm is not None

    def op_list_systems(self, req, rid):
        """The registry's records as plain data (docs/architecture.md, "The system registry")."""
        from engine.systems import registry

        return {"systems": [r.to_dict() for r in registry.systems()]}

    def op_prepare_models(self, req, rid):
        from engine.backbones import embedded

        result = embedded.prepare_default_models(progress=self.progress(rid))
        return {"result": str(result) if result is not None else "", "info": self.op_info(req, rid)}

    def op_create_agent(self, req, rid):
        from engine.systems import registry

        record = registry.get(req.system)
        if any(getattr(self, attr) is None for role, attr in (("generator", "lm"), ("encoder", "encoder"))
               if role in record.needs):
            self.op_load(protocol.Load(id=rid, needs=sorted(record.needs)), rid)
        models = registry.Models(generator=self.lm if "generator" in record.needs else None,
                                 encoder=self.encoder if "encoder" in record.needs else None,
                                 cache=self.shared_models)
        if self.retriever is not None and "encoder" in record.needs:
            models.components["retriever"] = self.retriever
        agent = registry.build_agent(record.name, models, **dict(req.options or {}))
        agent.main = _speaker(req.main or {"name": "Me"})
        self.agents[req.agent] = agent
        return {"agent": req.agent, "system": record.name, "describe": _plain(agent.describe()),
                "info": self.op_info(req, rid)}

    def op_eval_compare(self, req, rid):
        """``memlab eval compare`` for the Compare page's offline evaluation (:func:`engine.evaluation.job.compare_job`)
        on the loaded models; progress as it goes; a ``Cancel`` naming this request stops it between answers (the
        report of what finished comes back)."""
        from engine.evaluation.job import compare_job
        from engine.evaluation.loading import SystemBuilder
        from engine.systems import registry

        systems = [str(s) for s in req.systems or []]
        budget = float(req.budget_s) or None
        records = {s: registry.get(s) for s in systems}
        options = {s: dict((req.options or {}).get(s, {})) for s in systems}
        for s, rec in records.items():
            if budget is not None and any(o.name == "budget_s" for o in rec.options):
                options[s].setdefault("budget_s", budget)
            options[s] = rec.validate(options[s])
        needs = sorted({role for rec in records.values() for role in rec.needs})
        if needs:
            self.op_load(protocol.Load(id=rid, needs=needs), rid)
        models = registry.Models(generator=self.lm, encoder=self.encoder)
        if self.retriever is not None:
            models.components["retriever"] = self.retriever
        cancel = threading.Event()
        with self.send_lock:
            self.cancels[req.agent] = (rid, cancel)
            if rid in self.cancelled_requests:
                cancel.set()
        try:
            return compare_job(SystemBuilder(models, options), data=req.data, systems=systems, format=req.format,
                               limit=int(req.limit) or None, samples=int(req.samples), budget_s=budget, out=req.out,
                               seed=int(req.seed), progress=self.progress(rid), cancel=cancel)
        finally:
            with self.send_lock:
                self.cancels.pop(req.agent, None)
                self.cancelled_requests.discard(rid)

    def op_drop_agent(self, req, rid):
        self.agents.pop(req.agent, None)
        return {}

    def op_start_session(self, req, rid):
        agent = self.agent(req)
        main = _speaker(req.main) if req.main else agent.main
        agent.start_session(main, _speaker(req.partner), int(req.index))
        return {"index": int(req.index)}

    def op_respond(self, req, rid):
        name = req.agent
        agent = self.agent(req)
        cancel = threading.Event()
        with self.send_lock:
            self.cancels[name] = (rid, cancel)
            if rid in self.cancelled_requests:
                cancel.set()
        pieces = []
        started = time.perf_counter()
        cancelled = False
        try:
            for piece in agent.respond(req.text, cancel):
                pieces.append(piece)
                self.send(protocol.Token(id=rid, agent=name, text=str(piece)).to_wire())
            # the agent itself stops at the next token once ``cancel`` is set (Agent contract)
            cancelled = cancel.is_set()
        except Exception as exc:
            if type(exc).__name__ == "Cancelled":
                cancelled = True
            else:
                raise
        finally:
            with self.send_lock:
                self.cancels.pop(name, None)
                self.cancelled_requests.discard(rid)
        rec = agent.last_turn
        reply = rec.reply if rec is not None else None
        given = list(rec.given) if rec is not None else []
        return {"agent": name, "reply": reply if reply is not None else "".join(pieces),
                "memory_ids": list(rec.memory_ids) if rec is not None else [], "memories": given,
                "cancelled": bool(cancelled or getattr(rec, "cancelled", False)),
                "seconds": time.perf_counter() - started}

    def op_rewind(self, req, rid):
        """Forget the session's turns from the ``turn``-th user turn on (regenerate / edit a turn); the later
        turns stay in the app as a branch (Agent.rewind)."""
        k = int(req.turn)
        return {"turn": k, "kept": self.agent(req).rewind(k)}

    def op_restore_turns(self, req, rid):
        """Put back this session's turns after a worker restart (the app keeps the transcript; Agent.restore)."""
        from engine.agent import Unsupported

        try:
            return {"restored": self.agent(req).restore(list(req.turns))}
        except Unsupported:
            return {"restored": 0}

    def op_end_session(self, req, rid):
        agent = self.agent(req)
        stopper = _StopSessionEnd(agent)
        with self.send_lock:  # a Cancel naming this request asks the agent to finish early (Agent.stop_session_end)
            self.cancels[req.agent] = (rid, stopper)
            if rid in self.cancelled_requests:
                stopper.set()
        try:
            update = agent.end_session(progress=self.progress(rid))
        finally:
            with self.send_lock:
                self.cancels.pop(req.agent, None)
                self.cancelled_requests.discard(rid)
        return {"update": update.to_dict() if hasattr(update, "to_dict") else _plain(update),
                "memory": agent.memory_view(), "state": _plain(agent.state())}

    def op_state(self, req, rid):
        return _plain(self.agent(req).state())

    def op_load_state(self, req, rid):
        agent = self.agent(req)
        agent.load_state(req.state)
        return {"memory": agent.memory_view()}

    def op_memory(self, req, rid):
        return self.agent(req).memory_view()

    def op_edit_memory(self, req, rid):
        agent = self.agent(req)
        agent.edit_memory(req.memory, req.text)
        return agent.memory_view()

    def op_delete_memory(self, req, rid):
        agent = self.agent(req)
        agent.delete_memory(req.memory)
        return agent.memory_view()


class _StopSessionEnd:
    """Stands in for a cancel event while a session end runs: ``set()`` asks the agent to stop early."""

    def __init__(self, agent):
        self.agent = agent

    def set(self) -> None:
        self.agent.stop_session_end()


def _plain(obj):
    """Make ``obj`` picklable without engine classes (the parent must not need torch to read it)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    # exact builtin types only: a str/float subclass (torch's TorchVersion, numpy.float64) would make
    # the UI process import its module when it unpickles the message
    if obj is None or isinstance(obj, bool):
        return obj if obj is None else bool(obj)
    for t in (str, int, float, bytes):
        if isinstance(obj, t):
            return t(obj)
    if hasattr(obj, "tolist"):  # numpy / torch arrays
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return _plain(obj.to_dict())
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return _plain(asdict(obj))
    return str(obj)


def worker_main(conn, config: dict) -> None:
    """Entry point of the worker process; ``conn`` is a ``multiprocessing.connection.Connection``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # OpenMP threads that spin while waiting for each other make every forward pass crawl when the CPU is
    # shared with other programs (measured: 195-243 s vs 19 s per reply on a busy 2-core machine)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _Worker(conn, config).run()


if __name__ == "__main__":  # python -m desktop.engine_worker FD (started by desktop.engine_client)
    import json
    from multiprocessing.connection import Connection

    worker_main(Connection(int(sys.argv[1])), json.loads(os.environ.get("MEMLAB_WORKER_CONFIG", "{}")))
