"""A training job for tests/test_training_distributed.py (not a test module): LoRA on a tiny saved GPT-2
through the shared loop, run either as one process or under `accelerate launch`.

argv: MODEL_DIR OUT_DIR SEED [max_steps] [resume]. Rank 0 writes OUT_DIR/steps.json (the progress events)."""

import json
import os
import sys
from pathlib import Path

import torch


def main():
    model_dir, out, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    max_steps = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] != "-" else None
    resume = len(sys.argv) > 5 and sys.argv[5] == "resume"
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.training.loop import PeftAdapterIO, TrainConfig, train

    torch.manual_seed(seed + int(os.environ.get("RANK", "0")))  # ranks start different: rank 0's weights must win
    # no dropout: its random masks differ between processes, so no data-parallel run could match step for step
    base = AutoModelForCausalLM.from_pretrained(model_dir, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = get_peft_model(base,
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn"]))
    g = torch.Generator().manual_seed(1)
    data = [torch.randint(5, 300, (12,), generator=g) for _ in range(22)]   # equal lengths: token mean = example mean
    examples = [{"input_ids": x} for x in data[:18]]
    valid = [{"input_ids": x} for x in data[18:]]

    def collate(batch):
        ids = torch.stack([b["input_ids"] for b in batch])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    events = []
    result = train(model, examples, valid, collate=collate, loss_fn=lambda m, b: m(**b).loss, io=PeftAdapterIO(),
                   out_dir=out, config=TrainConfig(epochs=3, lr=5e-3, batch_size=4, grad_accum=2, patience=5,
                                                   max_steps=max_steps, show_bar=False, seed=0),
                   progress=lambda e: events.append({"phase": e.phase, "step": e.step, "loss": e.loss,
                                                     "eval": e.eval_loss}), resume=resume)
    if events:  # only rank 0 reports progress
        name = "steps-resumed.json" if resume else "steps.json"
        (out / name).write_text(json.dumps({"events": events, "status": result.status, "reasons": result.reasons,
                                            "rank": int(os.environ.get("RANK", "0"))}))


if __name__ == "__main__":
    main()
