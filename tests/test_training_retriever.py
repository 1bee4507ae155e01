"""EMMA retriever training (§4.2, App. E.2): triples from memory tags, triplet loss, one safetensors file with
dialogue_encoder./memory_encoder. keys, recall@k before/after."""

import pytest
from safetensors import safe_open

import tiny as tt
from engine.backbones.loading import load_encoder
from engine.data.model import Episode, Memory, Session, Speaker, Turn
from engine.systems.emma import train_retriever as er
from engine.systems.emma.checkpoints import load_retriever_checkpoint
from engine.training.loop import TrainConfig

TOPICS = [("cat", 0), ("marathon", 1), ("river", 2), ("violin", 3), ("book", 4), ("skiing", 5)]


def retrieval_episodes(n: int) -> list[Episode]:
    """Session 0 forms six memories; in session 1 the partner asks about one topic per turn pair and the
    main speaker's reply is tagged with the memory on that topic."""
    out = []
    for e in range(n):
        alice, bob, carol = Speaker("Alice", "teacher"), Speaker("Bob", "doctor"), Speaker("Carol", "painter")
        turns0 = [Turn(f"s0t{i}", "Bob", said) for i, (_, _, said) in enumerate(tt.FACTS)]
        mems = [Memory(f"m{i}", "Alice", "Bob", text, 0, [f"s0t{i}"]) for i, (_, text, _) in enumerate(tt.FACTS)]
        turns1 = []
        for k, (word, i) in enumerate(TOPICS[e % 3:] + TOPICS[:e % 3]):
            turns1.append(Turn(f"s1t{2 * k}", "Carol", f"Any news about the {word}?"))
            turns1.append(Turn(f"s1t{2 * k + 1}", "Alice", "Yes, I heard something.", [f"m{i}"]))
        out.append(Episode(f"r{e}", alice, [bob, carol], [Session(0, bob, "", turns0), Session(1, carol, "", turns1)],
                           mems, [], source="test"))
    return out


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tt.tiny_encoder(path=tmp_path_factory.mktemp("bert"))


def test_queries_use_the_agents_context_and_only_earlier_memories():
    ep = tt.episodes(1)[0]
    q = er.retrieval_queries([ep])
    assert [x.context for x in q] == ["Hi Alice, long time no see!",
                                      "Hi Alice, long time no see!\nHi Carol! Bob told me he adopted a cat.\n"
                                      "Really? I broke my arm skiing."]
    assert q[0].positives == ["Bob adopted a grey cat named Tom. (about Bob, from first session)"]
    assert len(q[0].candidates) == 4  # session-0 memories only; Carol's session-1 memory is not there yet
    triples = er.make_triples(q, fixed_negatives=True, hard_fraction=1.0)
    assert all(t.negative in q[0].candidates and t.negative not in q[i].positives for i, t in enumerate(triples))


@pytest.mark.slow
def test_triplet_training_improves_recall_and_writes_one_release_layout_file(bert, tmp_path):
    eps = retrieval_episodes(3)
    enc = load_encoder(bert, device="cpu")
    settings = er.RetrieverTrainSettings(in_batch_negatives=True, hard_fraction=1.0, context_max=48, memory_max=32)
    rep = er.train_retriever(eps, eps, tmp_path, encoder=enc, settings=settings,
                             loop_config=TrainConfig(epochs=20, lr=5e-3, batch_size=6, patience=20, show_bar=False))
    assert rep.before["queries"] == 18 and rep.before["mean_candidates"] == 6
    assert rep.after["recall@1"] > rep.before["recall@1"] and rep.after["recall@1"] >= 0.5, (rep.before, rep.after)
    assert rep.result["best_eval_loss"] < rep.result["initial_eval_loss"]
    files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert files == ["retriever.safetensors"]
    with safe_open(str(tmp_path / "retriever.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert f.metadata()["format"] == er.FORMAT
    assert keys and all(k.startswith(("dialogue_encoder.", "memory_encoder.")) for k in keys)
    assert {k.split(".", 1)[1] for k in keys if k.startswith("dialogue_encoder.")} == \
           {k.split(".", 1)[1] for k in keys if k.startswith("memory_encoder.")}
    # reloaded, the two towers reproduce the trained recall
    ctx, mem = load_retriever_checkpoint(tmp_path / "retriever.safetensors")
    again = er.recall_at_k(ctx, mem, er.retrieval_queries(eps))
    assert again["recall@1"] == rep.after["recall@1"]


def test_no_tagged_memories_is_a_clear_error(bert, tmp_path):
    ep = tt.episodes(1)[0]
    for _, t in ep.turns():
        t.memory_ids = []
    with pytest.raises(ValueError, match="tagged"):
        er.train_retriever([ep], [], tmp_path, encoder=load_encoder(bert, device="cpu"))
