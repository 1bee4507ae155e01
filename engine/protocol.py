"""The engine worker protocol (docs/architecture.md, "The engine worker protocol"): typed, versioned messages
between the desktop app (``desktop/engine_client.py``) and the engine worker process
(``desktop/engine_worker.py``).

Each request and reply is a dataclass here; on the wire it is a plain dict (``to_wire()``), so the UI process
never imports engine classes when it unpickles a reply.  :func:`parse_request` / :func:`parse_reply` turn a
wire dict back into its dataclass and reject a malformed one with an error naming the op and the field.
Torch-free and Qt-free.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

PROTOCOL = "memlab-worker/2"


class ProtocolError(ValueError):
    """A message that does not fit the protocol; the text names the op and the field."""


# ------------------------------------------------------------------------------------------ requests
@dataclass
class Request:
    """A request from the app; ``id`` is the client's integer request id (0 for fire-and-forget ones)."""

    op: ClassVar[str] = ""
    id: int = 0

    def to_wire(self) -> dict:
        return {"op": self.op, "v": PROTOCOL, **dataclasses.asdict(self)}


@dataclass
class Ping(Request):
    op: ClassVar[str] = "ping"


@dataclass
class Info(Request):
    """→ torch/CUDA/device facts, the configuration, the loaded models, the agents."""

    op: ClassVar[str] = "info"


@dataclass
class SetConfig(Request):
    """New model configuration (``lm``, ``encoder``, ``generator_adapter``, ``retriever``, ``load_in_4bit``);
    models whose configuration changed are dropped, with the agents."""

    op: ClassVar[str] = "set_config"
    config: dict = field(default_factory=dict)


@dataclass
class Load(Request):
    """Load the configured models of these roles (default: generator and encoder), with progress."""

    op: ClassVar[str] = "load"
    needs: list = field(default_factory=list)


@dataclass
class PrepareModels(Request):
    """Build the embedded default models (progress)."""

    op: ClassVar[str] = "prepare_models"


@dataclass
class ListSystems(Request):
    """→ ``{"systems": [SystemRecord.to_dict(), ...]}`` from the registry."""

    op: ClassVar[str] = "list_systems"


@dataclass
class CreateAgent(Request):
    """An agent of ``system`` with registry-validated ``options``; loads the models its record needs."""

    op: ClassVar[str] = "create_agent"
    agent: str = ""
    system: str = ""
    main: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


@dataclass
class DropAgent(Request):
    op: ClassVar[str] = "drop_agent"
    agent: str = ""


@dataclass
class StartSession(Request):
    op: ClassVar[str] = "start_session"
    agent: str = ""
    partner: dict = field(default_factory=dict)
    index: int = 0
    main: dict = field(default_factory=dict)


@dataclass
class Respond(Request):
    """→ ``Token`` replies, then the turn: reply, given items, cancelled, seconds."""

    op: ClassVar[str] = "respond"
    agent: str = ""
    text: str = ""


@dataclass
class Rewind(Request):
    """Forget the session's turns from the ``turn``-th user turn on (Agent.rewind)."""

    op: ClassVar[str] = "rewind"
    agent: str = ""
    turn: int = 0


@dataclass
class RestoreTurns(Request):
    """Put the open session's turns back (``[{"speaker", "text", "memory_ids"}]``; Agent.restore)."""

    op: ClassVar[str] = "restore_turns"
    agent: str = ""
    turns: list = field(default_factory=list)


@dataclass
class EndSession(Request):
    """→ progress, then the memory update, the memory view and the agent's state."""

    op: ClassVar[str] = "end_session"
    agent: str = ""


@dataclass
class State(Request):
    op: ClassVar[str] = "state"
    agent: str = ""


@dataclass
class LoadState(Request):
    op: ClassVar[str] = "load_state"
    agent: str = ""
    state: dict = field(default_factory=dict)


@dataclass
class Memory(Request):
    """→ the agent's memory view."""

    op: ClassVar[str] = "memory"
    agent: str = ""


@dataclass
class EditMemory(Request):
    op: ClassVar[str] = "edit_memory"
    agent: str = ""
    memory: str = ""
    text: str = ""


@dataclass
class DeleteMemory(Request):
    op: ClassVar[str] = "delete_memory"
    agent: str = ""
    memory: str = ""


@dataclass
class EvalCompare(Request):
    """``memlab eval compare`` in the worker (the Compare page's offline evaluation): every system in ``systems``
    answers the held-out turns of ``data`` (progress replies); a ``Cancel`` with ``agent`` and this request's id
    stops it between answers → the report of what finished (:func:`engine.evaluation.job.compare_job`)."""

    op: ClassVar[str] = "eval_compare"
    agent: str = "__eval__"
    data: str = ""
    format: str = "auto"
    systems: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    limit: int = 0          # held-out turns; 0: all
    samples: int = 5
    budget_s: float = 0.0   # seconds per user for per-user training; 0: no limit
    out: str = ""
    seed: int = 0


@dataclass
class Cancel(Request):
    """Stop ``agent``'s respond request ``request`` at its next token (handled at once by the reader thread)."""

    op: ClassVar[str] = "cancel"
    agent: str = ""
    request: int = 0


@dataclass
class Crash(Request):
    """Test hook: the worker dies the way a native crash would."""

    op: ClassVar[str] = "crash"
    code: int = 3


@dataclass
class Shutdown(Request):
    op: ClassVar[str] = "shutdown"


REQUESTS: dict[str, type[Request]] = {cls.op: cls for cls in (
    Ping, Info, SetConfig, Load, PrepareModels, ListSystems, CreateAgent, DropAgent, StartSession, Respond,
    Rewind, RestoreTurns, EndSession, State, LoadState, Memory, EditMemory, DeleteMemory, EvalCompare, Cancel,
    Crash, Shutdown)}


# ------------------------------------------------------------------------------------------ replies
@dataclass
class Reply:
    kind: ClassVar[str] = ""
    id: int = 0

    def to_wire(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass
class Hello(Reply):
    """Sent once when the worker starts."""

    kind: ClassVar[str] = "hello"
    pid: int = 0
    protocol: str = PROTOCOL


@dataclass
class Token(Reply):
    kind: ClassVar[str] = "token"
    agent: str = ""
    text: str = ""


@dataclass
class Progress(Reply):
    kind: ClassVar[str] = "progress"
    label: str = ""
    done: float = 0.0
    total: float = 0.0


@dataclass
class Result(Reply):
    kind: ClassVar[str] = "result"
    op: str = ""
    result: object = None


@dataclass
class Error(Reply):
    """A request failed (the worker keeps running); ``message`` is for the user."""

    kind: ClassVar[str] = "error"
    op: str = ""
    message: str = ""
    traceback: str = ""


REPLIES: dict[str, type[Reply]] = {cls.kind: cls for cls in (Hello, Token, Progress, Result, Error)}


# ------------------------------------------------------------------------------------------ parsing
_TYPES = {int: int, float: (int, float), str: str, dict: dict, list: list, "int": int, "float": (int, float),
          "str": str, "dict": dict, "list": list}


def _build(cls, data: dict, what: str):
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        want = _TYPES.get(f.type)
        if want is not None and not (isinstance(value, want) and not (want is int and isinstance(value, bool))):
            raise ProtocolError(f"{what}: field {f.name!r} must be {getattr(want, '__name__', 'a number')}, "
                                f"got {type(value).__name__}")
        values[f.name] = value
    return cls(**values)


def parse_request(data: dict) -> Request:
    """The request dataclass for a wire dict; unknown op, other protocol version or wrong field types are errors."""
    if not isinstance(data, dict):
        raise ProtocolError(f"a request must be a dict, got {type(data).__name__}")
    op = data.get("op")
    cls = REQUESTS.get(op)
    if cls is None:
        raise ProtocolError(f"unknown request {op!r}")
    version = data.get("v", PROTOCOL)
    if version != PROTOCOL:
        raise ProtocolError(f"request {op!r} speaks {version!r}; this worker speaks {PROTOCOL!r}")
    return _build(cls, data, f"request {op!r}")


def parse_reply(data: dict) -> Reply:
    if not isinstance(data, dict):
        raise ProtocolError(f"a reply must be a dict, got {type(data).__name__}")
    cls = REPLIES.get(data.get("kind"))
    if cls is None:
        raise ProtocolError(f"unknown reply kind {data.get('kind')!r}")
    return _build(cls, data, f"reply {data.get('kind')!r}")


def request(op: str, id: int = 0, **fields) -> Request:
    """``request("respond", 7, agent="a", text="hi")`` → a checked :class:`Respond`; an unknown field is an error."""
    cls = REQUESTS.get(op)
    if cls is None:
        raise ProtocolError(f"unknown request {op!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(fields) - known)
    if extra:
        raise ProtocolError(f"request {op!r} has no field {extra[0]!r} (its fields: {', '.join(sorted(known - {'id'}))})")
    return _build(cls, {"id": id, **fields}, f"request {op!r}")
