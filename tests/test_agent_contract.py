"""The agent contract on every built-in system (engine/agent.py): memory view, rewind/restore, ingesting a past
session, sampling replies without logging, and ``TurnRecord.given`` saying what the system was given."""

import pytest

from engine.agent import Unsupported
from engine.data.model import Speaker
from engine.systems import registry
from engine.systems.generation import GenerationSettings
from tiny import minilm, tiny_lm

ALICE, BOB, CAROL = Speaker("Alice", "teacher"), Speaker("Bob", "chef"), Speaker("Carol", "nurse")


@pytest.fixture(scope="module")
def models():
    return registry.Models(generator=tiny_lm("llama", tokenizer_kind="wordpiece"), encoder=minilm(),
                           settings=GenerationSettings(max_new_tokens=4, do_sample=False))


# systems whose record needs trained weights for these tiny models get their test-only option
TEST_OPTIONS = {"mdr": {"checkpoint": "untrained"}}


@pytest.mark.parametrize("name", registry.names())
def test_rewind_restore_sample_and_ingest(name, models):
    rec = registry.get(name)
    # a random tiny model supports no memory by its own likelihood: systems with a grounding check skip it here
    opts = {"grounding": "none"} if any(o.name == "grounding" for o in rec.options) else {}
    agent = registry.build_agent(name, models, **opts, **TEST_OPTIONS.get(name, {}))
    agent.main = ALICE
    update = agent.ingest_session(BOB, 0, [{"speaker": "Bob", "text": "I adopted a cat called Milo."},
                                           {"speaker": "Alice", "text": "How lovely, Bob!"}])
    assert agent.sessions[0]["turns"][0]["text"] == "I adopted a cat called Milo."
    if rec.keeps_memory and "memory_view" in rec.capabilities:
        assert update.memories, f"{name} stored nothing from an ingested session"
        view = agent.memory_view()
        assert {m["id"] for m in view["memories"]} >= {m.id for m in update.memories}
        assert view["owner"] == "Alice"
    else:
        assert agent.memory_view()["memories"] == []

    agent.start_session(ALICE, CAROL, 1)
    for text in ("Hi Alice!", "Any news about Bob's cat?"):
        list(agent.respond(text))
    rec_turn = agent.last_turn
    assert all(g["kind"] in ("memory", "turn") and "id" in g and "text" in g for g in rec_turn.given)
    assert [g["id"] for g in rec_turn.given] == rec_turn.memory_ids
    before = [t.text for t in agent.turns]
    replies = agent.sample_replies("And how are you?", 3)
    assert len(replies) == 3 and all(isinstance(r, str) for r in replies)
    assert [t.text for t in agent.turns] == before, "sampling must not log anything"

    kept = agent.rewind(1)
    assert [t.text for t in agent.turns][:1] == ["Hi Alice!"] and kept == len(agent.turns)
    assert agent.restore([{"speaker": "Carol", "text": "x"}, {"speaker": "Alice", "text": "y"}]) == 2
    assert [t.id for t in agent.turns] == ["s1t0", "s1t1"]
    with pytest.raises(IndexError):
        agent.rewind(5)
    if "adapters" in rec.capabilities:  # parameterised memory: the ingested partner's adapter
        assert [a["partner"] for a in agent.adapters()] == ["Bob"]
    else:
        assert agent.adapters() == []


def test_systems_without_memory_refuse_edits_clearly(models):
    agent = registry.build_agent("no-memory", models)
    with pytest.raises(Unsupported, match="no-memory keeps no editable memory"):
        agent.edit_memory("m0", "x")
