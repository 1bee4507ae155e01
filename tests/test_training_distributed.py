"""Training under `accelerate launch` (issue 14 §3): two CPU processes give the same losses as one process on
the same global batch; checkpoints, resume and progress come from rank 0 only."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "tests" / "distributed_train_job.py"


def _run(args, launch: bool):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU processes even on a GPU machine
    cmd = [sys.executable, str(JOB), *map(str, args)]
    if launch:
        # accelerate 1.16: `--cpu` starts several processes only through MPI; `--multi_gpu` starts them with
        # torchrun, and without CUDA they train on the CPU over gloo (engine/training/distributed.py)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *cmd[1:]]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def _losses(path):
    events = json.loads(path.read_text())["events"]
    return ([e["loss"] for e in events if e["phase"] == "train"],
            [e["eval"] for e in events if e["phase"] == "eval" and e["eval"] is not None])


@pytest.mark.slow
def test_two_processes_match_one_on_the_same_global_batch_and_resume(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import tiny_lm

    model = tiny_lm("gpt2", path=tmp_path / "tiny-gpt2")
    _run([model, tmp_path / "one", 0], launch=False)
    _run([model, tmp_path / "two", 0], launch=True)
    one_train, one_eval = _losses(tmp_path / "one" / "steps.json")
    two_train, two_eval = _losses(tmp_path / "two" / "steps.json")
    assert len(one_train) == len(two_train) == 9            # 18 examples / (4 × 2 accumulation) → 3 steps × 3 epochs
    assert two_train == pytest.approx(one_train, rel=1e-4, abs=1e-5)
    assert two_eval == pytest.approx(one_eval, rel=1e-4, abs=1e-5)
    assert one_train[-1] < one_train[0]                      # it learns
    report = json.loads((tmp_path / "two" / "steps.json").read_text())
    assert report["rank"] == 0 and any("data parallel: 2 processes" in r for r in report["reasons"])
    assert (tmp_path / "two" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "two" / "checkpoint-last" / "trainer_state.json").is_file()

    # stopped after 4 steps, resumed under accelerate: the same losses as the uninterrupted run
    _run([model, tmp_path / "resumed", 0, 4], launch=True)
    _run([model, tmp_path / "resumed", 0, "-", "resume"], launch=True)
    first, _ = _losses(tmp_path / "resumed" / "steps.json")
    rest, _ = _losses(tmp_path / "resumed" / "steps-resumed.json")
    assert first + rest == pytest.approx(one_train, rel=1e-4, abs=1e-5)
