"""The widened shared training parts: FFN / attention LoRA targets per architecture, named adapters,
per-layer rank and layers_to_transform (lora.py); the stepper, linear warm-up, caller-supplied parameter
groups, a maximised validation measure and the no-checkpoint mode (loop.py)."""

import pytest
import torch

from engine.training import lora
from engine.training.loop import Stepper, TrainConfig, train, warmup_scheduler


def _tiny(arch):
    from transformers import (BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                              T5Config, T5ForConditionalGeneration)

    torch.manual_seed(0)
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                            num_attention_heads=2, num_key_value_heads=1))
    if arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=3, n_head=2, n_positions=64))
    if arch == "t5":
        return T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_ff=32, d_kv=8, num_layers=3,
                                                   num_decoder_layers=3, num_heads=2, decoder_start_token_id=0))
    return BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                intermediate_size=32))


FFN_LEAVES = {"llama": {"gate_proj", "up_proj", "down_proj"}, "gpt2": {"c_fc", "c_proj"}, "t5": {"wi", "wo"},
              "bert": {"dense"}}


@pytest.mark.parametrize("arch", ["llama", "gpt2", "t5", "bert"])
def test_ffn_targets_are_feed_forward_only_and_follow_the_layer_mask(arch):
    model = _tiny(arch)
    kind = {"t5": "seq2seq", "bert": "encoder"}.get(arch, "causal")
    ffn = lora.projection_modules(model, "ffn")
    attn = lora.projection_modules(model, "attention")
    assert ffn and attn and not set(ffn) & set(attn)
    assert {n.rsplit(".", 1)[-1] for n in ffn} == FFN_LEAVES[arch]
    assert all("attn" not in n and "attention" not in n and "Attention" not in n for n in ffn)
    assert lora.num_layers(model) == 3
    peft_model = lora.attach_lora(model, kind, lora.LoraSettings(r=4, alpha=8, dropout=0.0, quantize="none"),
                                  targets="ffn", layers_to_transform=[0, 2])
    wrapped = {n.removeprefix("base_model.model.").rsplit(".lora_A", 1)[0]
               for n, _ in peft_model.named_parameters() if ".lora_A." in n}
    assert wrapped == {n for n in ffn if lora.layer_index(n) in (0, 2)}
    assert all(p.requires_grad == ("lora_" in n) for n, p in peft_model.named_parameters())


def test_rank_pattern_gives_per_layer_ranks_and_named_adapters_coexist():
    model = _tiny("llama")
    names = lora.projection_modules(model, "ffn", layers=[1])
    pattern = {n: 6 for n in names}
    pm = lora.attach_lora(model, "causal", lora.LoraSettings(r=2, alpha=4, dropout=0.0, quantize="none"),
                          targets="ffn", rank_pattern=pattern, adapter_name="mem")
    ranks = {n.split(".lora_A.")[0].removeprefix("base_model.model."): p.shape[0]
             for n, p in pm.named_parameters() if ".lora_A.mem." in n}
    assert {lora.layer_index(n): r for n, r in ranks.items()} == {0: 2, 1: 6, 2: 2}
    # a second named adapter on attention; switching and activating both
    lora.attach_lora(pm, "causal", lora.LoraSettings(r=2, alpha=4, dropout=0.0, quantize="none"),
                     targets="attention", adapter_name="style")
    assert set(pm.peft_config) == {"mem", "style"}
    with pytest.raises(ValueError, match="already has an adapter named 'mem'"):
        lora.attach_lora(pm, "causal", lora.LoraSettings(r=2, quantize="none"), targets="ffn", adapter_name="mem")
    x = torch.randint(0, 64, (1, 5))
    lora.activate_adapters(pm, ["mem", "style"])
    for n, p in pm.named_parameters():  # make both adapters non-zero
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    both = pm(input_ids=x).logits
    lora.activate_adapters(pm, "mem")
    only_mem = pm(input_ids=x).logits
    assert not torch.allclose(both, only_mem)
    with pytest.raises(ValueError, match="no adapter named 'nope'"):
        lora.activate_adapters(pm, "nope")


def test_old_calls_keep_their_attention_targets():
    model = _tiny("llama")
    pm = lora.attach_lora(model, "causal", lora.LoraSettings(r=2, quantize="none"))
    assert set(pm.peft_config["default"].target_modules) == {"q_proj", "v_proj"}


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="no ffn projection table"):
        lora.projection_modules(torch.nn.Linear(2, 2), "ffn")


def test_linear_warmup_then_constant_and_linear_decay():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sch = warmup_scheduler(opt, 4, 10, "linear")
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] > lrs[5] > lrs[9] > 0
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sch2 = warmup_scheduler(opt2, 2, 10, "constant")
    seen = []
    for _ in range(5):
        seen.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sch2.step()
    assert seen == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])


class _Regressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Linear(4, 1)
        self.b = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)


def _data(n=32):
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(n, 4, generator=g)
    ys = xs @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.3
    return [(x, y) for x, y in zip(xs, ys)]


def _collate(batch):
    return {"x": torch.stack([b[0] for b in batch]), "y": torch.stack([b[1] for b in batch])}


def _mse(model, batch):
    return ((model(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()


def test_no_checkpoint_mode_writes_nothing_and_a_max_measure_picks_the_best(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _Regressor()
    data = _data()
    valid = _data(8)
    calls = []

    def neg_mse(m):  # a measure to MAXIMISE
        with torch.no_grad():
            v = -float(_mse(m, _collate(valid)))
        calls.append(v)
        return v

    cfg = TrainConfig(epochs=6, lr=0.05, batch_size=8, show_bar=False, save_checkpoints=False,
                      measure_mode="max", warmup_ratio=0.1, patience=6)
    res = train(model, data, None, collate=_collate, loss_fn=_mse, config=cfg, measure=neg_mse, measure_name="neg_mse")
    assert list(tmp_path.iterdir()) == []
    assert res.measure_name == "neg_mse" and res.measure_mode == "max"
    assert res.best_eval_loss == max(calls) > res.initial_eval_loss
    assert neg_mse(model) == pytest.approx(res.best_eval_loss)  # the best weights are the final ones
    assert "neg_mse" in res.history[-1]


def test_caller_parameter_groups_and_own_optimizer():
    model = _Regressor()
    b_before = model.b.weight.detach().clone()
    groups = [{"params": model.a.parameters(), "lr": 0.1}]  # b is not in any group: it must not move
    train(model, _data(), None, collate=_collate, loss_fn=_mse, param_groups=groups,
          config=TrainConfig(epochs=2, batch_size=8, show_bar=False, save_checkpoints=False))
    assert torch.equal(model.b.weight, b_before)
    model2 = _Regressor()
    opt = torch.optim.SGD(model2.parameters(), lr=0.01)
    st = Stepper(model2, collate=_collate, loss_fn=_mse, config=TrainConfig(), total_steps=5, optimizer=opt)
    first = st.step([_data()[:8]])
    for _ in range(20):
        last = st.step([_data()[:8]])
    assert last < first and st.optimizer is opt and st.steps == 21


def test_no_checkpoint_mode_refuses_resume():
    with pytest.raises(ValueError, match="resume needs checkpoints"):
        train(_Regressor(), _data(), None, collate=_collate, loss_fn=_mse, resume=True,
              config=TrainConfig(save_checkpoints=False, show_bar=False))
    with pytest.raises(ValueError, match="out_dir and io are needed"):
        train(_Regressor(), _data(), None, collate=_collate, loss_fn=_mse, config=TrainConfig(show_bar=False))


def test_a_named_adapter_checkpoints_and_keeps_its_best_weights(tmp_path):
    from engine.training.loop import PeftAdapterIO

    model = lora.attach_lora(_tiny("llama"), "causal", lora.LoraSettings(r=2, alpha=4, dropout=0.0, quantize="none"),
                             targets="ffn", adapter_name="instruct")
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(0, 64, (8,), generator=g)} for _ in range(8)]

    def collate(b):
        ids = torch.stack([x["input_ids"] for x in b])
        return {"input_ids": ids, "labels": ids}

    res = train(model, data, data[:4], collate=collate, loss_fn=lambda m, b: m(**b).loss, io=PeftAdapterIO(),
                out_dir=tmp_path, config=TrainConfig(epochs=2, lr=5e-2, batch_size=4, show_bar=False))
    assert res.best_eval_loss < res.initial_eval_loss
    assert (tmp_path / "instruct" / "adapter_model.safetensors").is_file()
