"""MDR (paper 000): the equations' pieces, the three training stages on tiny random backbones (the paper's GPT-2
path and the LLM variant's BERT encoders), checkpoints, the agent and the training CLI."""

from __future__ import annotations

import json
import threading

import pytest

torch = pytest.importorskip("torch")

from engine.data.model import Speaker  # noqa: E402
from engine.systems.mdr.config import MdrConfig, StageSettings  # noqa: E402

CONVAI2 = "../shared/datasets/convai2/personachat_valid.json"


def tiny_gpt2(seed=0):
    from tests.tiny import tiny_lm

    return tiny_lm("gpt2", seed=seed)


def tiny_bert(seed=0):
    from tests.tiny import tiny_encoder

    return tiny_encoder(seed=seed)


@pytest.fixture(scope="module")
def examples():
    from pathlib import Path

    from engine.data.convai2 import read_convai2
    from engine.systems.mdr.data import examples_from_episodes

    path = Path(__file__).resolve().parents[1] / CONVAI2
    if not path.is_file():
        pytest.skip(f"{path} not present")
    eps = read_convai2(path)
    return examples_from_episodes(eps[:12]), examples_from_episodes(eps[12:14])


# ----------------------------------------------------------------------------------------- pieces

def test_config_validates_and_names_ablations():
    with pytest.raises(ValueError, match="hops"):
        MdrConfig(hops=0)
    with pytest.raises(ValueError, match="at least one"):
        MdrConfig(p_update=False, r_update=False)
    with pytest.raises(ValueError, match="unknown field"):
        MdrConfig.from_dict({"hopz": 3})
    assert MdrConfig().ablation_name() == "MDR"
    assert MdrConfig(r_update=False, sigma=1.0).ablation_name() == "no-R-Update+sigma=1"
    assert MdrConfig().seed == 2022 and MdrConfig().sigma == 0.5 and StageSettings().lr == 1e-4


def test_ablation_switches_parse():
    from engine.systems.mdr.train import ablation_config

    base = MdrConfig()
    assert ablation_config(base, "no-p-update").p_update is False
    assert ablation_config(base, "no-token-weights").token_weights is False
    assert ablation_config(base, "sigma=0.25").sigma == 0.25
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation_config(base, "no-teacher")


def test_examples_pair_queries_with_replies_and_carry_persona(examples):
    train, _ = examples
    ex = train[3]
    assert ex.persona and all(isinstance(p, str) for p in ex.persona)
    assert len(ex.history) == 3 or ex.history  # the earlier (Q, R) pairs of the same dialogue
    first = [e for e in train if e.episode == ex.episode][0]
    assert first.history == []


def test_history_selection_is_eq7_with_the_last_turn_added():
    """Eq. 7 with the real MiniLM as a teacher: the entry about dogs is chosen for a dog question."""
    from tests.tiny import minilm

    from engine.systems.mdr.model import FeatureEncoder, partial_history

    enc = minilm()
    teacher = FeatureEncoder(enc.model, enc.tokenizer)
    history = [("do you have pets?", "yes, two dogs, a beagle and a poodle."),
               ("what is your job?", "i repair cars at a garage."),
               ("nice weather today", "yes it is sunny.")]
    texts, index = partial_history(history, "what breed are your dogs?", teacher)
    assert index == 0
    assert texts == ["do you have pets? yes, two dogs, a beagle and a poodle.", "nice weather today", "yes it is sunny."]
    assert partial_history([], "hi", teacher) == ([], None)
    assert partial_history(history[:1], "hi", teacher) == (list(history[0]), None)


def test_token_weights_follow_a_normal_around_the_max():
    from engine.systems.mdr.model import FeatureEncoder, token_weights

    enc = tiny_bert()
    teacher = FeatureEncoder(enc.model, enc.tokenizer)
    ids = enc.tokenizer("i like dogs and cats", add_special_tokens=False)["input_ids"]
    targets = torch.tensor([ids + [-100]])
    r_te = teacher.cached(["i like dogs and cats"])
    w = token_weights(teacher, enc.tokenizer, targets, r_te, sigma=0.5)
    valid = w[0, :len(ids)]
    assert float(valid.max()) == pytest.approx(1.0) and float(w[0, -1]) == 0.0
    assert bool((valid > 0).all() and (valid <= 1).all())
    wide = token_weights(teacher, enc.tokenizer, targets, r_te, sigma=5.0)[0, :len(ids)]
    assert float(wide.min()) > float(valid.min())  # a larger σ flattens towards plain cross-entropy


@pytest.mark.parametrize("p_update,r_update", [(True, True), (False, True), (True, False)])
def test_memory_net_ablations_give_one_feature_per_example(p_update, r_update):
    from engine.systems.mdr.model import FeatureEncoder, MdrStudent, StudentInput

    enc = tiny_bert()
    cfg = MdrConfig(p_update=p_update, r_update=r_update, hops=2)
    side = MdrStudent(FeatureEncoder(enc.model, enc.tokenizer), FeatureEncoder(enc.model, enc.tokenizer), cfg)
    items = [StudentInput("hi there", ["i like tea.", "i have a cat."], ["a b", "c", "d"]),
             StudentInput("how are you", ["i am tall."], [])]
    side.eval()
    a, b = side(items), side(items)
    assert a.shape == (2, 32) and torch.equal(a, b)  # eval: fixed P(0)/R(0) draw, deterministic
    assert (side.p_update is None) != p_update and (side.r_update is None) != r_update
    side.train()
    assert not torch.equal(side(items), a)  # training: P(0) ~ N(0, σ²I) drawn per example


# ----------------------------------------------------------------------------------------- training

def _three_stages(tmp_path, gen, enc, train, valid, cfg, settings):
    from engine.systems.mdr.train import run_stage

    return [run_stage(s, tmp_path, gen, enc, train, valid, cfg, settings, show_bar=False)
            for s in ("teacher", "sentence", "token")]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_three_stages_lower_their_losses_and_the_agent_chats(tmp_path, examples, mode):
    """GPT-2 path (full fine-tuning, as the paper) and the LLM variant's LoRA path, on tiny random models."""
    from engine.systems.mdr import checkpoints as ck

    train, _ = examples
    gen, enc = tiny_gpt2(), tiny_bert()
    cfg = MdrConfig(encoder_mode=mode, decoder_mode=mode, hops=2)
    settings = StageSettings(epochs=3, lr=2e-3 if mode == "full" else 5e-3, batch_size=8, patience=3,
                             max_train_examples=16, max_valid_examples=16, warmup_ratio=0.0)
    subset = train[:16]
    reports = _three_stages(tmp_path, gen, enc, subset, subset[:16], cfg, settings)
    for rep in reports:
        assert rep.status == "completed", rep
        assert rep.best_eval_loss < rep.initial_eval_loss, (rep.stage, rep.initial_eval_loss, rep.best_eval_loss)
        assert any("loss" in c for c in rep.curve) and any("eval_loss" in c for c in rep.curve)
    assert ck.is_complete(tmp_path)
    doc = ck.read_manifest(tmp_path)
    assert set(doc["stages"]) == {"teacher", "sentence", "token"} and doc["config"]["encoder_mode"] == mode
    if mode == "lora":
        assert (tmp_path / "token" / "decoder" / "adapter_config.json").is_file()
        assert not (tmp_path / "token" / "checkpoint-last").exists()  # a finished stage drops its resume copy
    _chat_with(tmp_path, gen, enc)


def _chat_with(directory, gen, enc):
    from engine.systems.generation import GenerationSettings
    from engine.systems.mdr.agent import MdrAgent, MdrResponder
    from engine.systems.mdr.checkpoints import load_model

    model, _ = load_model(directory, gen, enc)
    agent = MdrAgent(MdrResponder(model, _view(model, gen), GenerationSettings(max_new_tokens=6, seed=0)))
    agent.start_session(Speaker("Ann", "teacher"), Speaker("Bob", "friend"), 0)
    assert agent.persona() == ["My name is Ann. I am a teacher."]  # nothing given: the speaker's name and job
    agent.ingest_memories([{"about": "Ann", "text": "i have two dogs.", "session": 0},
                           {"about": "Bob", "text": "he likes jazz.", "session": 0}])
    assert agent.persona() == ["i have two dogs."]
    for text in ("do you have pets?", "what is your job?", "tell me about your pets"):
        reply = "".join(agent.respond(text))
        assert agent.last_turn.reply == reply.strip()
    given = agent.last_turn.given
    assert [g["kind"] for g in given] == ["turn", "turn"]
    assert {g["id"] for g in given} <= {t.id for t in agent.turns}
    assert given[-1]["id"] == agent.turns[-3].id  # the last turn's reply, before this query
    agent.end_session()
    agent.start_session(Speaker("Ann", "teacher"), Speaker("Cy", "neighbour"), 1)
    "".join(agent.respond("hello"))
    assert agent.last_turn.given[-1]["id"].startswith("s0")  # history from the earlier session
    assert len(agent.sample_replies("what do you like?", 5)) == 5
    assert len(agent.turns) == 2  # sampling logs nothing
    state = json.loads(json.dumps(agent.state()))
    other = MdrAgent(agent.responder)
    other.load_state(state)
    assert other.episode_persona == ["i have two dogs."] and len(other.history_pairs()) == 3
    cancel = threading.Event()
    cancel.set()
    list(agent.respond("stop now", cancel))
    assert agent.last_turn.cancelled


def _view(model, gen):
    from engine.backbones.types import LoadedLM

    return LoadedLM(model.decoder.lm, model.decoder.tokenizer, "causal", gen.name, gen.plan)


@pytest.mark.slow
def test_a_stage_resumes_and_refuses_other_backbones(tmp_path, examples):
    from engine.systems.mdr import checkpoints as ck
    from engine.systems.mdr.train import run_stage

    train, valid = examples
    gen, enc = tiny_gpt2(), tiny_bert()
    cfg = MdrConfig(hops=1)
    s = StageSettings(epochs=1, lr=1e-3, batch_size=4, max_train_examples=16, max_valid_examples=4, max_steps=2)
    first = run_stage("teacher", tmp_path, gen, enc, train, valid, cfg, s, show_bar=False)
    assert first.status == "max-steps" and first.steps == 2
    with pytest.raises(RuntimeError, match="train the teacher first"):
        run_stage("sentence", tmp_path / "other", gen, enc, train, valid, cfg, s, show_bar=False)
    more = StageSettings(epochs=1, lr=1e-3, batch_size=4, max_train_examples=16, max_valid_examples=4)
    again = run_stage("teacher", tmp_path, gen, enc, train, valid, cfg, more, resume=True, show_bar=False)
    assert again.status == "completed" and again.steps == 4
    for stage in ("sentence", "token"):
        run_stage(stage, tmp_path, gen, enc, train, valid, cfg, more, show_bar=False)
    stranger = tiny_gpt2()
    stranger.name = "some-other-lm"
    with pytest.raises(ck.CheckpointError, match="trained on generator"):
        ck.load_model(tmp_path, stranger, enc)
    (tmp_path / "sentence" / ck.HEADS).unlink()
    with pytest.raises(ck.CheckpointError, match="sentence stage is not trained"):
        ck.load_model(tmp_path, gen, enc)


@pytest.mark.slow
def test_cli_trains_the_gpt2_path_from_directories(tmp_path, examples, capsys):
    """``memlab train mdr --stage all`` with a GPT-2 directory as generator *and* encoder (the paper's path)."""
    import argparse

    from engine.systems.mdr import checkpoints as ck
    from engine.systems.mdr.train import register

    gen = tiny_gpt2()
    gen.model.save_pretrained(tmp_path / "gpt2")
    gen.tokenizer.save_pretrained(tmp_path / "gpt2")
    data = tmp_path / "dialogues.json"
    doc = json.load(open(__import__("pathlib").Path(__file__).resolve().parents[1] / CONVAI2))[:6]
    data.write_text(json.dumps(doc))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="cmd"))
    out = tmp_path / "mdr"
    args = parser.parse_args(["mdr", "--stage", "all", "--data", str(data), "--generator", str(tmp_path / "gpt2"),
                              "--encoder", str(tmp_path / "gpt2"), "--out", str(out), "--epochs", "1",
                              "--batch-size", "8", "--max-train-examples", "16", "--max-valid-examples", "8",
                              "--no-progress", "--device", "cpu", "--plot", str(tmp_path / "curves.png"),
                              "--hops", "1", "--ablations", "no-r-update"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "stage token: completed" in printed and (tmp_path / "curves.png").stat().st_size > 5000
    assert ck.is_complete(out) and ck.read_manifest(out)["config"]["encoder_mode"] == "full"
    assert ck.is_complete(out / "no-r-update") and ck.read_manifest(out / "no-r-update")["config"]["r_update"] is False
    assert "no-r-update" in printed and "ablation" in printed
    bad = parser.parse_args(["mdr", "--stage", "token", "--data", str(tmp_path / "missing.json"), "--out", str(out)])
    assert bad.func(bad) == 2
    assert "missing.json" in capsys.readouterr().err
