"""The engine worker protocol (engine/protocol.py): every request round-trips through its wire dict, malformed
messages are errors naming the op and the field, and the worker answers through it (in a thread, over a real
multiprocessing connection)."""

import threading
from multiprocessing import Pipe

import pytest

from engine import protocol


def test_every_request_and_reply_round_trips_as_a_plain_dict():
    for op, cls in protocol.REQUESTS.items():
        req = cls(id=7)
        wire = req.to_wire()
        assert wire["op"] == op and wire["v"] == protocol.PROTOCOL and all(
            type(v) in (int, float, str, dict, list, bool) for v in wire.values())
        assert protocol.parse_request(wire) == req
    for kind, cls in protocol.REPLIES.items():
        assert protocol.parse_reply(cls(id=3).to_wire()) == cls(id=3)
    req = protocol.request("create_agent", 5, agent="a", system="rag", options={"k": 2})
    assert isinstance(req, protocol.CreateAgent) and req.options == {"k": 2}


def test_malformed_messages_name_the_op_and_the_field():
    with pytest.raises(protocol.ProtocolError, match="unknown request 'teleport'"):
        protocol.parse_request({"op": "teleport", "id": 1})
    with pytest.raises(protocol.ProtocolError, match="request 'rewind': field 'turn' must be int, got str"):
        protocol.parse_request({"op": "rewind", "id": 1, "agent": "a", "turn": "3"})
    with pytest.raises(protocol.ProtocolError, match="speaks 'memlab-worker/1'"):
        protocol.parse_request({"op": "info", "id": 1, "v": "memlab-worker/1"})
    with pytest.raises(protocol.ProtocolError, match="has no field 'txt'.*its fields: agent, text"):
        protocol.request("respond", 1, agent="a", txt="hi")


def test_the_worker_speaks_the_protocol():
    from desktop.engine_worker import _Worker

    parent, child = Pipe()
    worker = _Worker(child, {})
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    hello = protocol.parse_reply(parent.recv())
    assert isinstance(hello, protocol.Hello) and hello.protocol == protocol.PROTOCOL

    parent.send(protocol.ListSystems(id=1).to_wire())
    res = protocol.parse_reply(parent.recv())
    assert isinstance(res, protocol.Result) and res.op == "list_systems"
    assert "emma" in [s["name"] for s in res.result["systems"]]

    parent.send({"op": "respond", "id": 2, "agent": "nobody", "text": 5})
    err = protocol.parse_reply(parent.recv())
    assert isinstance(err, protocol.Error) and err.id == 2 and "field 'text' must be str" in err.message

    parent.send(protocol.request("respond", 3, agent="nobody", text="hi").to_wire())
    err = protocol.parse_reply(parent.recv())
    assert isinstance(err, protocol.Error) and "no agent 'nobody'" in err.message

    parent.send(protocol.Shutdown().to_wire())
    thread.join(10)
    assert not thread.is_alive()
