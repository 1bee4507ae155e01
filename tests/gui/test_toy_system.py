"""Done-when test of issue 8: a toy system in one folder with one registry record (tests/toy_systems/parrot)
appears, with no other change, in ``memlab chat --agent``, the engine worker's ``list_systems`` and agents,
the chat page's system list and the compare page's pickers; removing the folder removes it everywhere."""

import argparse
import json
import shutil
from pathlib import Path

import pytest

from engine import protocol

pytestmark = pytest.mark.gui
TOY = Path(__file__).resolve().parents[1] / "toy_systems" / "parrot"


def _chat_parser():
    from engine.chat import cli

    parser = argparse.ArgumentParser(prog="memlab")
    cli.register(parser.add_subparsers(dest="cmd"))
    return parser


def _chat_choices() -> list[str]:
    parser = _chat_parser()
    chat = parser._subparsers._group_actions[0].choices["chat"]
    return list(next(a for a in chat._actions if a.dest == "agent").choices)


def _combo_names(combo) -> list[str]:
    return [combo.itemData(i) for i in range(combo.count())]


def _everywhere(qtbot, tmp_path) -> dict:
    from desktop.app import create_window
    from desktop.engine_worker import _Worker
    from engine.systems import registry

    ctx, w = create_window(settings_path=tmp_path / "settings.ini", data_dir=tmp_path / "data")
    qtbot.addWidget(w)
    w.show_page("chat")
    w.show_page("compare")
    compare = w.page("compare")
    inner = getattr(compare, "view", compare)
    pickers = getattr(inner, "pickers", None) or getattr(compare, "pickers")
    worker = _Worker(conn=None, config={})
    return {"registry": registry.names(), "cli": _chat_choices(),
            "worker": [s["name"] for s in worker.op_list_systems(protocol.ListSystems(id=1), 1)["systems"]],
            "chat page": _combo_names(w.page("chat").system),
            "compare page": _combo_names(pickers[0])}


def test_a_toy_system_folder_appears_everywhere_and_disappears(qtbot, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEMLAB_NO_ENGINE", "1")
    plugins = tmp_path / "systems"
    shutil.copytree(TOY, plugins / "parrot")
    monkeypatch.setenv("MEMLAB_SYSTEMS_PATH", str(plugins))

    seen = _everywhere(qtbot, tmp_path / "a")
    for where, names in seen.items():
        assert "parrot" in names, f"the toy system is missing from {where}: {names}"
        assert "emma" in names, where

    # the CLI runs a whole scripted chat with it, options from its record
    script = tmp_path / "chat.txt"
    script.write_text("hello there\n/partner Carol:nurse\nsecond session\n")
    args = _chat_parser().parse_args(["chat", "--agent", "parrot", "--set", "prefix=squawk", "--partner", "Bob:chef",
                                      "--script", str(script), "--json"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["system"] == "parrot" and [s["partner"]["name"] for s in doc["sessions"]] == ["Bob", "Carol"]
    assert doc["sessions"][1]["turns"][-1]["text"] == "squawk second session"

    # the worker builds and runs it through the contract only
    from desktop.engine_worker import _Worker

    worker = _Worker(conn=None, config={})
    worker.send = lambda msg: None
    made = worker.op_create_agent(protocol.request("create_agent", 1, agent="p", system="parrot",
                                                   main={"name": "Alice"}), 1)
    assert made["system"] == "parrot" and worker.lm is None, "a system that needs no model loads none"
    worker.op_start_session(protocol.request("start_session", 2, agent="p", partner={"name": "Bob"}, index=0), 2)
    assert worker.op_respond(protocol.request("respond", 3, agent="p", text="hi"), 3)["reply"] == "you said: hi"
    assert worker.op_rewind(protocol.request("rewind", 4, agent="p", turn=0), 4)["kept"] == 0
    assert worker.op_memory(protocol.request("memory", 5, agent="p"), 5)["memories"] == []
    worker.op_create_agent(protocol.request("create_agent", 6, agent="q", system="parrot", main={"name": "A"}), 6)
    assert worker.agents["q"].heard is worker.agents["p"].heard, "what a system loads itself is shared"

    shutil.rmtree(plugins / "parrot")
    gone = _everywhere(qtbot, tmp_path / "b")
    for where, names in gone.items():
        assert "parrot" not in names, f"the removed toy system is still in {where}"
        assert "emma" in names, where
