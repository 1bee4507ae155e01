"""MiLP's pieces on tiny models: θ validation and the search-space coding (Table 6), the MaLP reader's
cleaning and located errors, FFN-only injection following α (Eq. 1) with the n·r equivalence, and the
search file / hypervolume bookkeeping."""

import json

import pytest
import torch

from engine.data.errors import DataFormatError
from engine.data.malp import clean_utterance, episodes_from_malp, parse_profile, read_malp
from engine.data.user_split import user_split
from engine.systems.milp.config import SearchSettings, SearchSpace, Theta, TrainSettings


def test_theta_is_validated_and_table6_is_the_default_space():
    space = SearchSpace(4)
    assert space.n_range == (0, 32) and space.ranks == (8, 16, 32, 64, 96) and space.dims == 6
    with pytest.raises(ValueError, match="0/1 per layer"):
        Theta((1, 2), 1, 8)
    with pytest.raises(ValueError, match="n .* >= 0"):
        Theta((1, 0), -1, 8)
    with pytest.raises(ValueError, match="outside the search range"):
        SearchSpace.narrowed(2).check(Theta((1, 1), 9, 8))
    with pytest.raises(ValueError, match="increasing"):
        SearchSpace(2, ranks=(16, 8))
    assert not Theta((0, 0), 3, 8).injects and not Theta((1, 0), 0, 8).injects
    assert Theta((1, 0, 1, 1), 2, 8).describe() == "n=2 r=8 on 3/4 layers 0,2-3"


def test_space_decode_encode_round_trip_covers_the_grid():
    space = SearchSpace.narrowed(3, n_range=(1, 4), ranks=(4, 8, 16))
    seen = set()
    g = torch.Generator().manual_seed(0)
    for x in torch.rand(400, space.dims, generator=g).tolist():
        theta = space.decode(x)
        assert space.decode(space.encode(theta)) == theta
        seen.add((theta.n, theta.r))
    assert seen == {(n, r) for n in range(1, 5) for r in (4, 8, 16)}


def test_malp_cleaning_and_located_errors(tmp_path):
    assert clean_utterance('"Patient: \\"I have a cough.\\""'.replace("\\", "")) == "I have a cough."
    assert clean_utterance('Doctor: Hello, how can I help?') == "Hello, how can I help?"
    assert clean_utterance('Jane: "Hi, I feel sick." (polite response)') == "Hi, I feel sick."

    def rnd(i, a, u):
        return {str(i): {"Assistant": a, "User": u}}
    good = [rnd(i, f"Doctor: reply {i}", f'"Patient: question {i}"') for i in range(6)]
    bad_field = [rnd(0, "Doctor: hi", 5)] + good[1:]
    empty = [rnd(0, '""', "x")] + good[1:]
    path = tmp_path / "d.json"
    path.write_text(json.dumps([good, bad_field, "nope", empty, good]))
    read = read_malp(path)
    assert [e.id for e in read.episodes] == ["malp-0000", "malp-0004"]
    msgs = [str(p) for p in read.problems]
    assert any("record 1, field [0].User" in m for m in msgs)
    assert any("record 2" in m and "list of rounds" in m for m in msgs)
    assert any("record 3, field [0].Assistant: empty" in m for m in msgs)
    ep = read.episodes[0]
    assert [t.text for t in ep.sessions[0].turns][:2] == ["reply 0", "question 0"]
    assert ep.sessions[0].turns[-1].speaker == "Doctor" and ep.sessions[1].turns[0].speaker == "patient-0000"
    assert ep.meta["split"] in ("train", "valid", "test")


def test_malp_profiles_keep_the_first_json_object_and_name_bad_records(tmp_path):
    ok = parse_profile("p", 0, '{"personal_information": "I am 30.", "symptoms": "cough", '
                                '"dialogue_preference": "prefer concise answer"}\n\nNote: text json')
    assert ok["symptoms"] == "cough"
    with pytest.raises(DataFormatError, match="record 1: not a profile but an API error"):
        parse_profile("p", 1, "{'code': 500, 'message': 'proxy error'}")
    with pytest.raises(DataFormatError, match="record 2, field symptoms"):
        parse_profile("p", 2, '{"personal_information": "x", "dialogue_preference": "y"}')


def test_user_split_is_70_10_20_by_user_and_deterministic():
    ids = [f"u{i}" for i in range(100)]
    a, b = user_split(ids, 3), user_split(ids, 3)
    assert a == b
    counts = {k: list(a.values()).count(k) for k in ("train", "valid", "test")}
    assert counts == {"train": 70, "valid": 10, "test": 20}


def _tiny_llama(layers=3):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1))


def test_injection_is_ffn_only_on_the_alpha_layers_and_counts_its_parameters():
    from engine.systems.milp.train_memory import ffn_shapes, inject, injected_parameters

    model = _tiny_llama()
    shapes = ffn_shapes(model)
    theta = Theta((1, 0, 1), 2, 4)
    pm = inject(model, "causal", theta)
    lora = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert lora and all(".mlp." in n for n in lora)
    assert {int(n.split(".layers.")[1].split(".")[0]) for n in lora} == {0, 2}
    assert sum(p.numel() for n, p in pm.named_parameters() if p.requires_grad) == injected_parameters(shapes, theta)
    ranks = {p.shape[0] for n, p in pm.named_parameters() if "lora_A" in n}
    assert ranks == {8}  # n·r
    with pytest.raises(ValueError, match="injects nothing"):
        inject(_tiny_llama(), "causal", Theta((0, 0, 0), 2, 4))


def test_n_parallel_rank_r_modules_equal_one_rank_nr_module():
    """The claim model.py rests on: Σ_j B_j A_j x (scale 1 each) == [B_1 B_2][A_1; A_2] x."""
    torch.manual_seed(1)
    d, k, r = 12, 10, 3
    A = [torch.randn(r, k) for _ in range(2)]
    B = [torch.randn(d, r) for _ in range(2)]
    x = torch.randn(5, k)
    separate = sum(x @ a.T @ b.T for a, b in zip(A, B))
    joint = x @ torch.cat(A).T @ torch.cat(B, dim=1).T
    assert torch.allclose(separate, joint, atol=1e-5)


def test_search_file_resumes_and_refuses_another_space(tmp_path):
    from engine.systems.milp import search

    space = SearchSpace.narrowed(3, ranks=(4, 8))
    settings = SearchSettings(trials=3, initial=2)
    sf = search.SearchFile(tmp_path / "s.jsonl", space, settings, {"user": "u"})
    sf.add(search.Trial("init", 0, Theta((1, 0, 1), 1, 4).to_dict(), [0.5] * 5, 2.0, 0.1, 10, 1, 1, 2))
    sf.add(search.Trial("init", 1, Theta((1, 1, 1), 2, 8).to_dict(), [0.6] * 5, 1.5, 0.2, 20, 1, 1, 2))
    again = search.SearchFile(tmp_path / "s.jsonl", space, settings, {"user": "u"})
    assert len(again.of("bo")) == 2 and again.of("random")[1].cross_entropy == 1.5
    with pytest.raises(ValueError, match="another search space"):
        search.SearchFile(tmp_path / "s.jsonl", SearchSpace.narrowed(4), settings, {})
    hv = search.hypervolumes(again.of("bo"), [-2.1, 0.05])
    assert hv[1] > hv[0] > 0
    assert [t.cross_entropy for t in search.pareto(again.of("bo"))] == [1.5]


@pytest.mark.slow
def test_bo_and_random_share_initial_points_and_bo_never_repeats_a_theta(tmp_path):
    from engine.systems.milp import search
    from engine.systems.milp.train_memory import Objectives

    space = SearchSpace.narrowed(4, n_range=(1, 3), ranks=(4, 8))
    settings = SearchSettings(trials=6, initial=3, seed=1)

    def evaluate(theta):  # a smooth synthetic landscape: deep layers and rank help
        deep = sum(theta.alpha[2:])
        return Objectives(2.0 - 0.1 * deep - 0.01 * theta.r, 0.1 + 0.02 * deep + 0.001 * theta.n, 1, 0, 0, None)

    sf = search.run(space, settings, evaluate, search.SearchFile(tmp_path / "s.jsonl", space, settings, {}))
    bo, rnd = sf.of("bo"), sf.of("random")
    assert len(bo) == len(rnd) == 6 and bo[:3] == rnd[:3]
    keys = [tuple(t.theta["alpha"]) + (t.theta["n"], t.theta["r"]) for t in bo]
    assert len(set(keys)) == len(keys)
    summary = search.summary(sf)
    assert summary["compared_counts"] == 6 and "bo_at_or_above_random_at_every_count" in summary
    png = search.plot(sf, tmp_path / "p.png")
    assert png.stat().st_size > 10_000
