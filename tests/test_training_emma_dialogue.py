"""EMMA dialogue-module training: the three task datasets (§4.1 / App. E.1), the chat-template encoding with
loss on the answer only, training on tiny T5 / Llama-style backbones, and the CLI."""

import json

import pytest

import tiny as tt
from engine.backbones.loading import load_lm
from engine.data.episode_format import write_episodes
from engine.systems.emma import formats
from engine.systems.emma import train_dialogue as ed
from engine.training.encoding import IGNORE
from engine.training.loop import TrainConfig


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"t5": tt.tiny_lm("t5", path=root / "t5"), "llama": tt.tiny_lm("llama", path=root / "llama", max_positions=2048, init_range=0.3)}


def test_generation_examples_carry_tagged_memories_with_links_and_provenance():
    ep = tt.episodes(1)[0]
    gens = ed.generation_examples(ep)
    # every main-speaker turn after the first turn of its session
    assert [g.target for g in gens][-2:] == [ep.sessions[1].turns[1].text, ep.sessions[1].turns[3].text]
    cat = gens[-2].fields
    assert cat["session_index"] == 1 and cat["partner"].name == "Carol" and cat["bot_name"] == "Alice"
    assert cat["history"] == [("Carol", "Hi Alice, long time no see!")]
    (text, linked), = cat["memories"]
    assert text == "Bob adopted a grey cat named Tom. (about Bob, from first session)"
    # linked to the marathon memory (same session); the session-1 memory about Carol did not exist yet
    assert linked == ["Bob is training for a marathon in May. (about Bob, from first session)"]
    src = formats.generation_input(**cat)
    assert src.startswith("generation: [Alice] teacher [Carol] painter [MEMORY] Bob adopted")
    assert src.endswith("[NOW] second session [Carol] Hi Alice, long time no see! [Alice]")
    # session-0 turns: no memory existed before the first session
    assert all(not g.fields["memories"] for g in gens if g.fields["session_index"] == 0)


def test_summarization_targets_are_sep_joined_or_none():
    ep = tt.episodes(1)[0]
    summ = {(e.fields["about"], len(e.fields["session_turns"])): e.target for e in ed.summarization_examples(ep)}
    assert summ[("Bob", 5)] == "Bob adopted a grey cat named Tom. [SEP] Bob is training for a marathon in May."
    assert summ[("Carol", 4)] == "Carol broke her arm skiing."
    assert summ[("Alice", 4)] == "[NONE]"
    assert formats.parse_summary(summ[("Bob", 5)]) == ["Bob adopted a grey cat named Tom.",
                                                       "Bob is training for a marathon in May."]


def test_link_examples_negatives_come_from_unlinked_pairs():
    import random

    ep = tt.episodes(1)[0]
    ex = ed.link_examples(ep, random.Random(0), negatives_per_positive=2.0)
    pos = [e for e in ex if e.target == "positive"]
    neg = [e for e in ex if e.target == "negative"]
    assert len(pos) == len(ep.links) and len(neg) == 2 * len(ep.links)
    linked = {(ep.memory(l.src).text, ep.memory(l.dst).text) for l in ep.links}
    strip = lambda s: s.split(" (about")[0]  # noqa: E731
    for e in neg:
        pair = (strip(e.fields["m1"]), strip(e.fields["m2"]))
        assert pair not in linked and pair[::-1] not in linked
    assert formats.link_input(**pos[0].fields).startswith("memory sentence1: Bob is training")


def test_chat_encoding_puts_the_loss_on_the_answer_only(models):
    lm = load_lm(models["llama"], device="cpu")
    ex = ed.generation_examples(tt.episodes(1)[0])[-1]
    enc = ed.encode_example(ex, lm.tokenizer, "causal", 1024, 64)
    answer = [t for t, l in zip(enc["input_ids"], enc["labels"]) if l != IGNORE]
    assert lm.tokenizer.decode(answer) == ex.target + "<|im_end|>\n"
    prompt = lm.tokenizer.decode(enc["input_ids"][:len(enc["input_ids"]) - len(answer)])
    assert prompt.endswith("<|im_start|>assistant\n") and "Bob adopted a grey cat" in prompt
    # a long history is cut from the oldest turn, never the newest
    short = ed.encode_example(ex, lm.tokenizer, "causal", 60, 64)
    assert len([l for l in short["labels"] if l == IGNORE]) <= 60 + 0
    assert lm.tokenizer.decode(short["input_ids"]).rstrip().endswith(ex.target + "<|im_end|>")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["t5", "llama"])
def test_training_lowers_validation_loss_and_link_accuracy_is_measured(models, tmp_path, kind):
    eps = tt.episodes(2)
    lm = load_lm(models[kind], device="cpu")
    settings = ed.DialogueTrainSettings(max_input=160, link_eval_pairs=4,
                                        lora=ed.LoraSettings(r=8, alpha=16, dropout=0.0))
    rep = ed.train_dialogue(eps, eps, tmp_path / kind, lm=lm, settings=settings,
                            loop_config=TrainConfig(epochs=2, lr=2e-2, batch_size=8, show_bar=False))
    assert rep.kind == ("seq2seq" if kind == "t5" else "causal")
    assert rep.result["status"] == "completed"
    for task in ed.TASKS:
        assert rep.after["loss"][task] < rep.before["loss"][task], task
    assert 0.0 <= rep.before["link_accuracy"] <= 1.0
    cfg = json.loads((tmp_path / kind / "adapter_config.json").read_text())
    assert cfg["r"] == 8 and cfg["base_model_name_or_path"] == str(models[kind])
    # the adapter loads through the public loading path the chat uses
    loaded = load_lm(models[kind], adapter=tmp_path / kind, device="cpu")
    assert any("adapter" in r for r in loaded.plan.reasons)


def _cli(argv):
    import argparse

    from engine.training import cli

    parser = argparse.ArgumentParser(prog="memlab")
    cli.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.slow
def test_cli_trains_from_a_file_and_names_bad_input(models, tmp_path, capsys):
    data = tmp_path / "eps.json"
    write_episodes(data, tt.episodes(4))
    out = tmp_path / "adapter"
    code = _cli(["train", "emma-dialogue", "--train", str(data), "--valid-fraction", "0.25",
                 "--backbone", str(models["t5"]), "--out", str(out), "--epochs", "1", "--lora-r", "4",
                 "--batch-size", "8", "--grad-accum", "1", "--max-input", "256", "--no-progress", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "seq2seq" and report["n_train"] > 0 and report["n_valid"] > 0
    assert (out / "adapter_model.safetensors").is_file()

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "memlab-episode/1", "episodes": [{"id": "x"}]}))
    assert _cli(["train", "emma-dialogue", "--train", str(bad), "--backbone", str(models["t5"]),
                 "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "main" in err
