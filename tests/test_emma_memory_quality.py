"""EMMA's memory checks, link schedules, link head, presets and training-data builders (issue: memory a
researcher can trust) on tiny models and the real MiniLM encoder."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.data.model import Speaker
from engine.memory import MemoryStore
from engine.systems.emma import formats, grounding, linking, presets
from engine.systems.emma.link_head import LinkHead, fit
from engine.systems.emma.train_mix import calibrate_threshold, precision_recall
from engine.systems.emma.train_sources import third_person
from engine.systems.generation import GenerationSettings
from engine.systems.registry import make_agent
from tiny import minilm, tiny_lm

ALICE, BOB = Speaker("Alice", "teacher"), Speaker("Bob", "neighbour")
ROOT = Path(__file__).resolve().parents[1]


def test_summarizer_input_is_the_final_generation_sequence_app_e1():
    turns = [("Bob", "I adopted a beagle."), ("Alice", "Lovely!")]
    s = formats.summarize_input("Bob", turns, main=ALICE, partner=BOB, memories=[("Bob runs.", [])], session_index=1)
    assert s == ("summarize [ABOUT_Bob]: generation: [Alice] teacher [Bob] neighbour [MEMORY] Bob runs. "
                 "[NOW] second session [Bob] I adopted a beagle. [Alice] Lovely!")
    msgs = formats.chat_messages("summarize", about="Bob", session_turns=turns, main=ALICE, partner=BOB,
                                 memories=[("Bob runs.", [])], session_index=1)
    text = " ".join(m["content"] for m in msgs)
    for needed in ("You are Alice, teacher", "Bob, neighbour", "second", "Bob: I adopted a beagle.", "Bob runs."):
        assert needed in text


def test_well_formedness_rejects_fragments_and_duplicates():
    assert "not a sentence" in grounding.form_problem("told me that", set())
    seen = {grounding.normalise("Bob adopted a beagle named Pepper.")}
    assert "duplicate" in grounding.form_problem("Bob adopted a beagle named Pepper", seen)
    assert grounding.form_problem("Bob adopted a beagle named Pepper.", set()) is None


class _Fixed:
    """A grounding test double: rejects what its rule says (the real ones are learned, tested below)."""

    def judge(self, candidates, turns, main, partner, session_index):
        return [grounding.Verdict(a, t, "Pepper" not in t or a == "Bob", "" if "Pepper" not in t or a == "Bob"
                                  else "said by Bob") for a, t in candidates]


def test_check_candidates_keeps_order_and_reasons():
    cands = [("Alice", "."), ("Alice", "Alice adopted Pepper the beagle."), ("Bob", "Bob adopted Pepper the beagle."),
             ("Bob", "Bob adopted Pepper the beagle.")]
    v = grounding.check_candidates(cands, [("Bob", "I adopted Pepper")], ALICE, BOB, 0, grounding=_Fixed(), existing=[])
    assert [x.ok for x in v] == [False, False, True, False]
    assert "not a sentence" in v[0].reason and v[1].reason == "said by Bob" and "duplicate" in v[3].reason


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_likelihood_grounding_scores_own_other_and_no_turns(arch):
    lm = tiny_lm(arch, tokenizer_kind="wordpiece")
    g = grounding.LikelihoodGrounding(lm, min_gain=-100.0, margin=100.0)
    v = g.judge([("Bob", "Bob adopted a dog.")], [("Bob", "I adopted a dog."), ("Alice", "Nice.")], ALICE, BOB, 0)
    assert len(v) == 1 and v[0].ok and set(v[0].scores) == {"own", "other", "none", "gain"}
    strict = grounding.LikelihoodGrounding(lm, min_gain=100.0)
    v = strict.judge([("Bob", "Bob adopted a dog.")], [("Bob", "I adopted a dog.")], ALICE, BOB, 0)
    assert not v[0].ok and "not supported by Bob's turns" in v[0].reason


def test_emma_stores_only_checked_memories_and_reports_rejected():
    lm = tiny_lm("llama", tokenizer_kind="wordpiece")
    agent = make_agent("emma", lm, minilm(), settings=GenerationSettings(max_new_tokens=6, do_sample=False),
                       grounding="likelihood", grounding_min_gain=100.0)  # nothing a random model writes passes
    agent.start_session(ALICE, BOB, 0)
    list(agent.respond("I adopted a kitten named Tom."))
    update = agent.end_session()
    assert update.memories == [] and len(agent.store) == 0
    for r in update.rejected:
        assert r["reason"] and r["about"] in ("Alice", "Bob")
    d = agent.describe()
    assert d["label"].startswith("EMMA · ") and d["grounding"] == "likelihood"


def _store(texts):
    store = MemoryStore("Alice")
    mems = [store.add(a, t, s) for a, t, s in texts]
    enc = minilm()
    from engine.systems.emma.retriever import Retriever

    r = Retriever(enc)
    r.refresh(store)
    return store, mems, r


def test_session_end_schedule_new_x_new_then_new_x_earlier_with_a_cap():
    store, m, r = _store([("Bob", "Bob adopted a beagle named Pepper.", 0), ("Carol", "Carol moves to Lisbon.", 1),
                          ("Bob", "Bob likes jazz.", 1), ("Bob", "Pepper chewed Bob's shoes.", 2),
                          ("Bob", "Bob bought Pepper a bed.", 2)])
    pairs = linking.session_end_pairs(store, [m[3].id, m[4].id], 0, r.refresh)
    assert pairs[0] == (m[4].id, m[3].id) and len(pairs) == 1 + 2 * 3
    capped = linking.session_end_pairs(store, [m[3].id, m[4].id], 1, r.refresh)
    assert capped[1:] == [(m[3].id, m[0].id), (m[4].id, m[0].id)]  # the most similar earlier memory: Pepper


def test_per_turn_schedule_links_the_retrieved_memory_top1():
    lm = tiny_lm("llama", tokenizer_kind="wordpiece")
    agent = make_agent("emma", lm, minilm(), settings=GenerationSettings(max_new_tokens=4, do_sample=False),
                       link_schedule="per-turn", link_threshold=0.0, link_candidates=2, grounding="none")
    store, m, _ = _store([("Bob", "Bob adopted a beagle named Pepper.", 0), ("Carol", "Carol moves to Lisbon.", 1)])
    agent.store = store
    agent.start_session(ALICE, BOB, 2)
    list(agent.respond("Pepper chewed my shoes!"))
    assert len(agent.turn_links) == 1 and store.graph().number_of_edges() == 1
    update = agent.end_session()
    assert len(update.links) == 1 and "per-turn" in " ".join(update.notes)


def test_link_settings_validate():
    with pytest.raises(ValueError, match="schedule"):
        linking.LinkSettings(schedule="sometimes")
    with pytest.raises(ValueError, match="candidates"):
        linking.LinkSettings(candidates=-1)


def test_calibrated_threshold_is_the_best_precision_at_the_recall():
    probs = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    labels = [1, 0, 1, 0, 1, 0, 0, 1]
    cal = calibrate_threshold(probs, labels, 0.5)
    assert cal["recall"] >= 0.5 and 0.7 > cal["threshold"] > 0.6
    pr = precision_recall(probs, labels, cal["threshold"])
    assert pr["recall"] == 0.5 and pr["precision"] == pytest.approx(2 / 3)


def test_link_head_learns_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(200, 8)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    y = rng.integers(0, 2, 200)
    v = np.where(y[:, None] == 1, u + 0.1 * rng.normal(size=u.shape), rng.normal(size=u.shape)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    head = fit(u, v, y)
    p = head.probabilities(u, v)
    assert ((p > 0.5) == (y == 1)).mean() > 0.9
    head.threshold = 0.42
    again = LinkHead.load(head.save(tmp_path / "h.safetensors"))
    assert again.threshold == pytest.approx(0.42) and np.allclose(again.probabilities(u, v), p, atol=1e-5)
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.safetensors"):
        LinkHead.load(tmp_path / "bad.safetensors")


def test_presets_name_the_backbone():
    assert presets.system_label("/x/models/smollm2-135m-instruct") == "EMMA · SmolLM2-135M"
    assert presets.system_label("google/flan-t5-large", "emma-paper") == "EMMA · FLAN-T5-Large (paper)"
    p = presets.get("emma-paper")
    assert (p.backbone, p.encoder, p.memory_encoder, p.pooling, p.quantize_4bit_on_cuda) == \
        ("google/flan-t5-large", "bert-base-uncased", "bert-base-uncased", "cls", True)
    with pytest.raises(ValueError, match="emma-paper"):
        presets.get("nope")


def test_third_person_rewrites_persona_sentences():
    assert third_person("i'm a nurse .", "Bob") == "Bob is a nurse."
    assert third_person("i surf often.", "Bob") == "Bob surfs often."
    assert third_person("my favorite color is blue .", "Bob") == "Bob's favorite color is blue."


def test_compact_retriever_checkpoint_loads_over_its_base(tmp_path):
    import torch
    from safetensors.torch import save_file

    from engine.systems.emma.checkpoints import load_retriever_checkpoint
    from tiny import tiny_encoder

    base = tiny_encoder(path=tmp_path / "enc")
    from engine.backbones.loading import load_encoder

    enc = load_encoder(str(base))
    layers = {f"dialogue_encoder.{k}": (v + 1.0).half() for k, v in enc.model.state_dict().items()
              if not k.startswith("embeddings.")}
    f = tmp_path / "r.safetensors"
    save_file(layers, str(f), metadata={"base": str(base), "pooling": "mean",
                                        "from_base": "dialogue_encoder.embeddings,memory_encoder"})
    ctx, mem = load_retriever_checkpoint(f)
    k = next(iter(layers))[len("dialogue_encoder."):]
    assert torch.allclose(ctx.model.state_dict()[k], enc.model.state_dict()[k] + 1.0, atol=1e-2)
    assert torch.equal(mem.model.state_dict()[k], enc.model.state_dict()[k])


def test_memory_quality_judge_counts_the_five_figures():
    sys.path.insert(0, str(ROOT / "bench"))
    import memory_quality as mq

    chats = sorted((ROOT / "bench" / "memory_quality_chats").glob("*.json"))
    assert len(chats) >= 12
    chat = mq.load_chat(chats[0])
    assert len(chat["sessions"]) >= 3
    doc = {"main": {"name": "Alice"}, "sessions": [
        {"index": 0, "turns": [{"speaker": "Bob", "text": chat["sessions"][0]["lines"][0]}]},
        {"index": 1, "turns": []},
        {"index": 2, "turns": [{"speaker": "Bob", "text": "My dog chewed my running shoes!"}, {"speaker": "Alice", "text": "y", "memories": [
            {"text": "Bob adopted a beagle named Pepper. (about Bob, from first session)"}]},
            {"speaker": "Bob", "text": "q"}, {"speaker": "Alice", "text": "a", "memories": [
                {"text": "Bob adopted a beagle named Pepper. (about Bob, from first session)"}]}]}],
        "memory": {"memories": [
            {"id": "m0", "about": "Bob", "session": 0, "text": "Bob adopted a beagle named Pepper. (about Bob, from first session)"},
            {"id": "m1", "about": "Alice", "session": 0, "text": "Alice told me she adopted a dog named Pepper."},
            {"id": "m2", "about": "Bob", "session": 0, "text": "told me that"},
            {"id": "m3", "about": "Bob", "session": 2, "text": "Bob said his dog chewed his running shoes."}],
            "links": [{"src": "m3", "dst": "m0", "kind": "related"}]}}
    row = mq.judge(chat, doc)
    assert row["misattributed"] == 1 and row["junk"] == 1 and row["retrieval_hit_rate"] == 1.0
    assert row["topical_cross_session_links"] == 1 and row["recalled"] >= 1
    assert json.dumps(mq.total([row]))
