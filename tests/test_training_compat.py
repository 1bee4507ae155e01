"""Published EMMA release formats, built locally over tiny random models and loaded back through the public
loading paths: a peft LoRA adapter directory over a T5 backbone, and one retriever safetensors file with
dialogue_encoder./memory_encoder. keys over two BERT encoders."""

import pytest
import torch
from safetensors.torch import save_file

import tiny as tt
from engine.backbones.encoding import encode
from engine.backbones.loading import load_encoder, load_lm
from engine.systems.emma.checkpoints import (CheckpointError, adapter_summary, describe_retriever_checkpoint,
                                         load_retriever_checkpoint)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compat")
    return {"t5": tt.tiny_lm("t5", path=root / "t5"), "bert": tt.tiny_encoder(path=root / "bert"),
            "bert2": tt.tiny_encoder(path=root / "bert2", seed=1), "root": root}


@pytest.mark.slow
def test_release_style_lora_adapter_loads_onto_t5(dirs, tmp_path):
    from peft import LoraConfig, TaskType, get_peft_model

    base = load_lm(dirs["t5"], device="cpu").model
    torch.manual_seed(3)
    peft = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=32, lora_alpha=32,
                                           lora_dropout=0.1, target_modules=["q", "v"]))
    with torch.no_grad():  # a trained adapter: non-zero B matrices change the output
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.eval()
    adapter = tmp_path / "emma-adapter"
    peft.save_pretrained(str(adapter))
    assert adapter_summary(adapter)["r"] == 32 and sorted(adapter_summary(adapter)["target_modules"]) == ["q", "v"]

    lm = load_lm(dirs["t5"], adapter=adapter, device="cpu")  # what `memlab chat --adapter` does
    ids = lm.tokenizer(["generation: [Alice] teacher [Bob] doctor [NOW] first session [Bob] hi [Alice]"],
                       return_tensors="pt")
    dec = torch.tensor([[lm.tokenizer.pad_token_id, 5, 6]])
    with torch.no_grad():
        want = peft(**ids, decoder_input_ids=dec).logits
        got = lm.model(**ids, decoder_input_ids=dec).logits
        plain = load_lm(dirs["t5"], device="cpu").model(**ids, decoder_input_ids=dec).logits
    assert torch.allclose(want, got, atol=1e-5)
    assert not torch.allclose(plain, got, atol=1e-3)


def _release_file(path, ctx_model, mem_model, prefix=""):
    tensors = {f"dialogue_encoder.{prefix}{k}": v for k, v in ctx_model.state_dict().items()}
    tensors |= {f"memory_encoder.{prefix}{k}": v for k, v in mem_model.state_dict().items()}
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(path))  # no metadata, as the release
    return path


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_release_style_retriever_file_loads_over_two_berts(dirs, tmp_path, prefix):
    ctx_src = load_encoder(dirs["bert"], device="cpu")
    mem_src = load_encoder(dirs["bert2"], device="cpu")  # different weights per tower
    path = _release_file(tmp_path / "retriever.safetensors", ctx_src.model, mem_src.model, prefix)

    with pytest.raises(CheckpointError, match="base encoder"):
        load_retriever_checkpoint(path)  # the release file does not name its base
    ctx, mem = load_retriever_checkpoint(path, str(dirs["bert"]))
    assert ctx.pooling == mem.pooling == "cls"  # the release compares [CLS] vectors
    texts = ["Bob adopted a cat.", "I moved near the river."]
    for loaded, src in ((ctx, ctx_src), (mem, mem_src)):
        src.pooling = "cls"
        assert torch.allclose(encode(loaded, texts), encode(src, texts), atol=1e-5)
    info = describe_retriever_checkpoint(path)
    assert info["dialogue_encoder_tensors"] == info["memory_encoder_tensors"] > 0


def test_trained_file_loads_through_the_chat_retriever_loader(dirs, tmp_path):
    """The loader the chat and the desktop app call (engine.systems.emma.retriever) reads our files too."""
    from engine.systems.emma.retriever import load_retriever_checkpoint as chat_loader

    enc = load_encoder(dirs["bert"], device="cpu")
    path = _release_file(tmp_path / "r.safetensors", enc.model, enc.model)
    retriever = chat_loader(path, str(dirs["bert"]), device="cpu")
    assert retriever.context_encoder.model is not retriever.memory_encoder.model


def test_mismatched_shapes_and_missing_towers_are_clear_errors(dirs, tmp_path):
    from transformers import BertConfig, BertModel

    big = BertModel(BertConfig(vocab_size=400, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64))
    path = _release_file(tmp_path / "big.safetensors", big, big)
    with pytest.raises(CheckpointError, match=r"big.safetensors: dialogue_encoder\.\S+ has shape \([^)]*48[^)]*\) but the base encoder BertModel expects \([^)]*32"):
        load_retriever_checkpoint(path, str(dirs["bert"]))

    only = tmp_path / "one-tower.safetensors"
    save_file({"dialogue_encoder.x": torch.zeros(1)}, str(only))
    with pytest.raises(CheckpointError, match="memory_encoder"):
        load_retriever_checkpoint(only, str(dirs["bert"]))
