"""The shared training loop: loss goes down, checkpoints resume exactly, cancel keeps a checkpoint, early
stopping keeps the best weights, adapters are standard peft directories."""

import threading

import pytest
import torch

import tiny as tt
from engine.backbones.loading import load_lm
from engine.training import encoding
from engine.training.lora import LoraSettings, attach_lora, target_modules_for
from engine.training.loop import LAST_DIR, PeftAdapterIO, TrainConfig, train


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory):
    return tt.tiny_lm("llama", path=tmp_path_factory.mktemp("llama"), max_positions=2048, init_range=0.3)


@pytest.fixture(scope="module")
def t5_path(tmp_path_factory):
    return tt.tiny_lm("t5", path=tmp_path_factory.mktemp("t5"))


def _examples(lm, n=6):
    msgs = [[{"role": "user", "content": f"Say the fact number {i}."}] for i in range(n)]
    return [encoding.encode_chat(lm.tokenizer, m, tt.FACTS[i % len(tt.FACTS)][1], 128, 32) for i, m in enumerate(msgs)]


def _lora_lm(path, dropout=0.0):
    lm = load_lm(path, device="cpu")
    torch.manual_seed(0)  # the same LoRA initialisation in every run
    lm.model = attach_lora(lm.model, lm.kind, LoraSettings(r=4, alpha=8, dropout=dropout, quantize="none"))
    return lm


def _fit(lm, examples, out, **kw):
    pad = encoding.pad_id(lm.tokenizer)
    cfg = TrainConfig(**({"epochs": 4, "lr": 2e-2, "batch_size": 2, "show_bar": False} | kw.pop("cfg", {})))
    return train(lm.model, examples, kw.pop("valid", examples), collate=lambda b: encoding.collate(b, lm.kind, pad),
                 loss_fn=encoding.lm_loss, io=PeftAdapterIO(), out_dir=out, config=cfg, **kw)


def test_target_modules_per_architecture(llama_path, t5_path):
    assert target_modules_for(load_lm(t5_path, device="cpu").model) == ["q", "v"]
    assert target_modules_for(load_lm(llama_path, device="cpu").model) == ["q_proj", "v_proj"]


@pytest.mark.slow
def test_loss_goes_down_and_adapter_dir_loads_back_with_peft(llama_path, tmp_path):
    from peft import PeftModel

    lm = _lora_lm(llama_path)
    data = _examples(lm)
    events = []
    res = _fit(lm, data, tmp_path / "a", progress=events.append)
    assert res.status == "completed"
    assert res.best_eval_loss < res.initial_eval_loss * 0.8
    assert any(e.phase == "train" and e.loss is not None for e in events)
    assert events[-1].phase == "done"
    assert (tmp_path / "a" / "adapter_config.json").is_file()
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    # the saved directory is a standard peft adapter: the base model + it reproduces the trained model
    batch = encoding.collate(data[:2], "causal", encoding.pad_id(lm.tokenizer))
    lm.model.eval()
    with torch.no_grad():
        want = lm.model(**batch).logits
    base = load_lm(llama_path, device="cpu").model
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "a")).eval()
    with torch.no_grad():
        got = reloaded(**batch).logits
    assert torch.allclose(want, got, atol=1e-5)


@pytest.mark.slow
def test_resume_continues_exactly_where_it_stopped(llama_path, tmp_path):
    full = _lora_lm(llama_path)
    data = _examples(full)
    _fit(full, data, tmp_path / "full", cfg={"grad_accum": 2, "eval_before": False})

    part = _lora_lm(llama_path)
    first = _fit(part, data, tmp_path / "part", cfg={"grad_accum": 2, "max_steps": 3, "eval_before": False})
    assert first.status == "max-steps" and first.resumable
    assert (tmp_path / "part" / LAST_DIR / "optimizer.safetensors").is_file()
    fresh = _lora_lm(llama_path)  # a new process would start from the base model again
    second = _fit(fresh, data, tmp_path / "part", cfg={"grad_accum": 2, "eval_before": False}, resume=True)
    assert second.status == "completed"
    assert second.global_step == 8  # 4 epochs x ceil(3 micro-batches / 2)
    a = dict(full.model.named_parameters())
    for name, p in fresh.model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p, a[name], atol=1e-6), name


@pytest.mark.slow
def test_cancel_stops_at_once_and_leaves_a_resumable_checkpoint(llama_path, tmp_path):
    lm = _lora_lm(llama_path)
    cancel = threading.Event()

    def progress(ev):
        if ev.phase == "train" and ev.step >= 2:
            cancel.set()

    res = _fit(lm, _examples(lm), tmp_path / "c", progress=progress, cancel=cancel)
    assert res.status == "cancelled"
    assert res.global_step == 2
    resumed = _fit(_lora_lm(llama_path), _examples(lm), tmp_path / "c", resume=True)
    assert resumed.status == "completed" and resumed.global_step == 12


class _Scalar(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


class _ScalarIO:
    def save(self, model, directory):
        from safetensors.torch import save_file
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"w": model.w.detach().clone()}, str(directory / "w.safetensors"))

    def load(self, model, directory):
        from safetensors.torch import load_file
        model.w.data.copy_(load_file(str(directory / "w.safetensors"))["w"])


def test_early_stopping_keeps_the_best_weights(tmp_path):
    """Training pulls w towards +1 while validation wants -1: validation gets worse from the first epoch,
    so training stops after `patience` epochs and the result is the best (initial) weights."""
    model = _Scalar()
    def loss(m, b):
        return ((m.w - b["t"]) ** 2).mean()
    ex_train = [{"t": torch.ones(1)}] * 4
    ex_valid = [{"t": -torch.ones(1)}] * 2
    res = train(model, ex_train, ex_valid, collate=lambda b: {"t": torch.stack([e["t"] for e in b])},
                loss_fn=loss, io=_ScalarIO(), out_dir=tmp_path, config=TrainConfig(
                    epochs=10, lr=0.1, batch_size=2, patience=2, show_bar=False))
    assert res.status == "early-stopped"
    assert res.epochs_done == 2
    assert res.best_eval_loss == pytest.approx(1.0)
    assert model.w.item() == pytest.approx(0.0)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        LoraSettings(r=0)
