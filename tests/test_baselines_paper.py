"""The EMMA paper's other baselines as registry systems: the base LLM with all memories or with EMMA's
retriever (App. H), and the published ReBot / MSC 2.7B checkpoints (tiny BART / Blenderbot configs here)."""

import pytest

from engine.agent import Unsupported
from engine.data.model import Speaker
from engine.systems import registry
from engine.systems.baselines.memory_llm import adapter_off
from engine.systems.generation import GenerationSettings
from tiny.models import tiny_encoder, tiny_lm

ALICE, BOB, CAROL = Speaker("Alice", "teacher"), Speaker("Bob", "vet"), Speaker("Carol", "nurse")
SETTINGS = GenerationSettings(max_new_tokens=4, do_sample=False)


@pytest.fixture(scope="module")
def adapted():
    """A tiny Llama with a random LoRA adapter: the adapter visibly changes the logits."""
    import torch
    from peft import LoraConfig, get_peft_model

    lm = tiny_lm("llama")
    torch.manual_seed(1)
    model = get_peft_model(lm.model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                                init_lora_weights=False))
    model.eval()
    lm.model = model
    return lm


def _chat(agent):
    agent.main = ALICE
    agent.ingest_memories([{"about": "Alice", "text": "I am a teacher at the village school."}])
    agent.ingest_session(BOB, 0, [{"speaker": "Bob", "text": "I adopted a grey cat named Tom."},
                                  {"speaker": "Alice", "text": "How lovely!"}])
    agent.start_session(ALICE, CAROL, 1)
    reply = "".join(agent.respond("How is Bob's cat?"))
    return reply, agent.last_turn


def test_adapter_off_runs_the_base_model(adapted):
    import torch

    ids = adapted.tokenizer("hello there", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        with_adapter = adapted.model(input_ids=ids).logits
        with adapter_off(adapted):
            base = adapted.model(input_ids=ids).logits
        again = adapted.model(input_ids=ids).logits
    assert not torch.allclose(with_adapter, base) and torch.allclose(with_adapter, again)


@pytest.mark.parametrize("name", ["all-memories", "llm-retriever"])
def test_llm_baselines_get_emma_memories_and_reply_with_the_base_model(name, adapted):
    models = registry.Models(generator=adapted, encoder=tiny_encoder(), settings=SETTINGS)
    agent = registry.build_agent(name, models)
    reply, turn = _chat(agent)
    view = agent.memory_view()
    assert any(m["text"].startswith("I am a teacher") for m in view["memories"])
    if name == "all-memories":
        assert {g["id"] for g in turn.given} == {m["id"] for m in view["memories"]}
    else:
        assert 1 <= len(turn.given) <= len(view["memories"])
    assert "base model" in agent.describe()["replies_by"]
    from engine.systems import generation as gen

    with adapter_off(adapted):  # the reply is what the base model writes for the same prompt
        assert reply == gen.generate_text(adapted, _last_prompt(agent), SETTINGS)


def _last_prompt(agent):
    """The prompt of the agent's last turn, rebuilt from its log (the partner turn it answered)."""
    saved = list(agent.turns)
    agent.turns = saved[:-1] if saved and saved[-1].speaker == agent.main.name else saved
    try:
        return agent._prompt()[0]
    finally:
        agent.turns = saved


def _save_tiny(tmp_path, arch):
    from transformers import BartConfig, BartForConditionalGeneration, BlenderbotConfig, BlenderbotForConditionalGeneration

    from tiny.tokenizers import tokenizer

    tok = tokenizer("t5", "bpe")
    common = dict(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                  decoder_start_token_id=tok.pad_token_id, bos_token_id=tok.pad_token_id)
    model = (BartForConditionalGeneration(BartConfig(**common)) if arch == "bart"
             else BlenderbotForConditionalGeneration(BlenderbotConfig(**common)))
    path = tmp_path / arch
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return str(path)


def test_rebot_loads_its_two_checkpoints_and_summarises_each_session(tmp_path):
    from engine.backbones.loading import load_lm

    bart = _save_tiny(tmp_path, "bart")
    models = registry.Models(generator=load_lm(bart, device="cpu"), settings=SETTINGS)
    agent = registry.build_agent("rebot", models, summarization=bart, device="cpu")
    assert "note" not in agent.describe()  # a BART checkpoint: the published architecture
    agent.main = ALICE
    agent.ingest_session(BOB, 0, [{"speaker": "Bob", "text": "I adopted a cat."}, {"speaker": "Alice", "text": "Nice!"}])
    agent.start_session(ALICE, CAROL, 1)
    list(agent.respond("Hello!"))
    prompt = _last_prompt(agent)
    assert prompt.startswith("<relationship> teacher and nurse <A few days after> ")
    assert "[now] <nurse> Hello! <teacher>" in prompt
    assert len(agent.memory_view()["memories"]) <= 1  # one chronological summary per session at most


def test_msc_runs_its_checkpoint_and_keeps_the_whole_history(tmp_path):
    from engine.backbones.loading import load_lm

    with pytest.raises(registry.RegistryError, match="generator"):
        registry.build_agent("msc", registry.Models(settings=SETTINGS))
    bb = _save_tiny(tmp_path, "blenderbot")
    agent = registry.build_agent("msc", registry.Models(generator=load_lm(bb, device="cpu"), settings=SETTINGS))
    assert "note" not in agent.describe()
    agent.main = ALICE
    agent.ingest_session(BOB, 0, [{"speaker": "Bob", "text": "I adopted a cat."}, {"speaker": "Alice", "text": "Nice!"}])
    agent.start_session(ALICE, CAROL, 1)
    list(agent.respond("Hello!"))
    assert _last_prompt(agent) == "I adopted a cat.\nNice!\nHello!"
    with pytest.raises(Unsupported):
        agent.ingest_memories([{"about": "Alice", "text": "x"}])
