"""EMMA (paper §4) on tiny random seq2seq and causal backbones with the real MiniLM retriever encoder."""

import threading

import numpy as np
import pytest

from engine.data.model import Speaker
from engine.memory import MemoryStore
from engine.systems import generation as gen
from engine.systems.emma import formats
from engine.systems.generation import GenerationSettings
from engine.systems.registry import make_agent
from tiny import minilm, tiny_lm

ALICE, BOB, CAROL = Speaker("Alice", "teacher"), Speaker("Bob", "vet"), Speaker("Carol", "nurse")
KINDS = ["seq2seq", "causal"]


@pytest.fixture(scope="module", params=KINDS)
def lm(request):
    return tiny_lm({"causal": "llama", "seq2seq": "t5"}[request.param], tokenizer_kind="wordpiece")


def _agent(lm, **opts):
    return make_agent("emma", lm, minilm(), settings=GenerationSettings(max_new_tokens=6, do_sample=False), **opts)


# ---------------------------------------------------------------- formats (Appendix E.1, docs/architecture.md "EMMA release conventions")
def test_sequence_formats_match_the_paper():
    s = formats.generation_input(ALICE, BOB, [("Bob has a cat.", ["Bob got the cat in May."])], 1,
                                 [("Bob", "Hi!"), ("Alice", "Hello."), ("Bob", "Guess what?")], "Alice")
    assert s == ("generation: [Alice] teacher [Bob] vet [MEMORY] Bob has a cat. [LINK] Bob got the cat in May. "
                 "[NOW] second session [Bob] Hi! [Alice] Hello. [Bob] Guess what? [Alice]")
    assert formats.summarize_input("Bob", [("Bob", "I got a cat.")]) == "summarize [ABOUT_Bob]: [Bob] I got a cat."
    assert formats.link_input("a.", "b.") == "memory sentence1: a. memory sentence2: b."
    assert formats.summary_target(["x", "y"]) == "x [SEP] y" and formats.summary_target([]) == "[NONE]"
    assert formats.parse_summary("x [SEP] y (about Bob, from first session) [SEP] x") == ["x", "y"]
    assert formats.parse_summary(" [NONE] </s>") == []
    assert formats.provenance_suffix("Bob", 0) == "(about Bob, from first session)"
    assert formats.ordinal(5) == "sixth" and formats.ordinal(22) == "23rd"
    msgs = formats.chat_messages("link", m1="a.", m2="b.")
    assert [m["role"] for m in msgs] == ["system", "user"] and "positive" in msgs[0]["content"]
    g = formats.chat_messages("generation", main=ALICE, partner=BOB, memories=[("Bob has a cat.", [])],
                              session_index=0, history=[("Bob", "hi"), ("Alice", "hey"), ("Bob", "cat?")],
                              bot_name="Alice")
    assert [m["role"] for m in g] == ["system", "user", "assistant", "user"] and "Bob has a cat." in g[0]["content"]


# ---------------------------------------------------------------- retrieval (§4.2)
def _state_with_fact():
    s = MemoryStore("Alice")
    fact = s.add("Bob", "Bob adopted a kitten named Tom. (about Bob, from first session)", 0, ["s0t0"])
    s.add("Alice", "I am preparing a history exam for my class. (about Alice, from first session)", 0)
    later = s.add("Bob", "Bob is worried the kitten Tom is sick. (about Bob, from first session)", 0)
    s.add("Alice", "I want to run a marathon in the spring. (about Alice, from first session)", 0)
    s.link(later.id, fact.id)
    return s, fact, later


def test_retrieves_top1_plus_linked_and_records_them(lm):
    agent = _agent(lm)
    store, fact, later = _state_with_fact()
    agent.store = store
    agent.start_session(ALICE, CAROL, 1)
    reply = "".join(agent.respond("Carol here. What is the name of the kitten that Bob adopted?"))
    rec = agent.last_turn
    assert rec.reply == reply.strip() and rec.memory_ids[0] in (fact.id, later.id)
    assert set(rec.memory_ids) == {fact.id, later.id}  # top-1 plus the memory linked to it
    prompt = agent.dialogue.reply_prompt(ALICE, CAROL, [(fact.text, [later.text])], 1,
                                         [("Carol", "What is the name of the kitten that Bob adopted?")])
    assert fact.text in prompt
    agent.end_session()
    turns = agent.state()["sessions"][-1]["turns"]
    assert turns[1]["speaker"] == "Alice" and set(turns[1]["memory_ids"]) == {fact.id, later.id}


def test_memory_vectors_are_cached_not_recomputed_per_turn(lm, monkeypatch):
    agent = _agent(lm)
    store, fact, _ = _state_with_fact()
    agent.store = store
    encoded = []
    real = agent.retriever.embed_memories
    monkeypatch.setattr(agent.retriever, "embed_memories", lambda texts: encoded.append(len(texts)) or real(texts))
    agent.start_session(ALICE, CAROL, 1)
    for q in ("How is Bob's kitten?", "Any news about the exam?", "Tell me about Tom."):
        list(agent.respond(q))
    assert encoded == [4]  # four memories encoded once, in one batch, over three turns


# ---------------------------------------------------------------- session end (§4.1)
def test_end_session_summarises_about_both_speakers_and_links(lm):
    agent = _agent(lm)
    agent.start_session(ALICE, BOB, 0)
    list(agent.respond("I adopted a kitten named Tom."))
    update = agent.end_session()
    abouts = {m.about for m in update.memories}
    assert abouts <= {"Alice", "Bob"}
    for m in update.memories:
        assert m.owner == "Alice" and m.session == 0 and m.source_turns == ["s0t0", "s0t1"][:len(m.source_turns)]
        assert m.text.endswith(f"(about {m.about}, from first session)")
    for link in update.links:
        assert agent.store.graph().has_edge(link.src, link.dst)
    state = agent.state()
    other = _agent(lm)
    other.load_state(state)
    assert [m.text for m in other.store.memories()] == [m.text for m in agent.store.memories()]


def test_linking_scores_labels_in_batches_without_sampling(lm, monkeypatch):
    agent = _agent(lm, link_batch_size=4)
    forwards = []
    model = agent.dialogue.lm.model
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: forwards.append(1) or real_forward(*a, **k))
    monkeypatch.setattr(model, "generate", lambda *a, **k: pytest.fail("linking must not sample"))
    pairs = [(f"memory {i} about cats", f"memory {j} about dogs") for i, j in zip(range(10), range(10, 20))]
    p = agent.dialogue.link_probabilities(pairs)
    assert p.shape == (10,) and np.all((p > 0) & (p < 1))
    assert len(forwards) <= 1 + 3  # the shared prefix (causal, first call) + ceil(10 / 4) batches


def test_batched_label_scores_equal_one_by_one(lm):
    prompts = [gen.render_prompt(lm, formats.link_input(a, b), formats.chat_messages("link", m1=a, m2=b))
               for a, b in [("short", "a much longer memory sentence about a trip to Rome"), ("x y", "z")]]
    for labels in (formats.LINK_LABELS, ("positive link here", "negative")):  # one-token and multi-token paths
        batched = gen.score_labels(lm, prompts, labels, batch_size=8)
        single = np.concatenate([gen.score_labels(lm, [p], labels) for p in prompts])
        np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-4)


def test_cancel_stops_the_turn_and_is_recorded(lm):
    agent = make_agent("emma", lm, minilm(), settings=GenerationSettings(max_new_tokens=200, do_sample=False))
    agent.start_session(ALICE, BOB, 0)
    cancel = threading.Event()
    pieces = []
    for piece in agent.respond("Hello there!", cancel):
        pieces.append(piece)
        cancel.set()
    assert agent.last_turn.cancelled and len(pieces) == 1
    assert [t.speaker for t in agent.turns] == ["Bob"]  # the cut-off reply is not kept


@pytest.mark.slow
def test_smollm2_end_to_end_fact_from_session_one_reaches_session_two(smollm2_dir):
    from engine.backbones.loading import load_lm

    from engine.systems.emma.paths import find_default_adapter

    adapter, _why = find_default_adapter()  # what the app and the CLI put on the embedded generator
    agent = make_agent("emma", load_lm(str(smollm2_dir), device="cpu", adapter=str(adapter) if adapter else None),
                       minilm(), settings=GenerationSettings(max_new_tokens=24, do_sample=False))
    agent.start_session(ALICE, BOB, 0)
    list(agent.respond("Big news, Alice: I adopted a kitten and named her Luna!"))
    list(agent.respond("Luna is tiny and grey, and she sleeps on my keyboard."))
    update = agent.end_session()
    about_bob = [m for m in update.memories if m.about == "Bob"]
    assert about_bob, ([m.text for m in update.memories], update.rejected)
    assert not [m for m in update.memories if m.about == "Alice" and "Luna" in m.text and "Bob" not in m.text]
    agent.start_session(ALICE, CAROL, 1)
    list(agent.respond("Hi Alice, it's Carol. Did Bob tell you about his new kitten?"))
    given = [agent.store.get(i) for i in agent.last_turn.memory_ids]
    assert any(m.about == "Bob" for m in given), [m.text for m in given]


def test_broken_summary_markers_are_not_stored_as_memories():
    from engine.systems.emma.formats import parse_summary

    assert parse_summary("[NO]") == []
    assert parse_summary("Bob adopted a cat called Milo. [SEP] [SE") == ["Bob adopted a cat called Milo."]
    assert parse_summary("I told Bob about my class trip. [SEP] Bob is training for a marathon.") == [
        "I told Bob about my class trip.", "Bob is training for a marathon."]
