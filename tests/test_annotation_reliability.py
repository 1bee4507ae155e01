"""Reliability (issue 2 §8): kill -9 during a burst of ratings; two processes writing at once."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotation.campaigns import add_annotator, create_campaign
from annotation.db import init_study, integrity_check
from annotation.importer import import_file

from annotation_helpers import episode_file

ROOT = Path(__file__).resolve().parents[1]
WRITER = """
import sys, itertools
from annotation.db import open_study
from annotation.queue import queue_items
from annotation.ratings import rate
path, annotator, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
study = open_study(path)
keys = [k for k, _ in queue_items(study, "c", annotator)]
print("ready", flush=True)
for i in itertools.count() if n < 0 else range(n):
    r = rate(study, "c", annotator, keys[i % len(keys)], "humanness", 1 + i % 5, seconds=0.1)
    print(r.id, flush=True)
"""


@pytest.fixture
def study_path(tmp_path):
    path = tmp_path / "s.db"
    with init_study(path) as s:
        import_file(s, episode_file(tmp_path, 2))
        create_campaign(s, "c", "model", overlap="full")
        add_annotator(s, "w1", "A")
        add_annotator(s, "w2", "B")
    return path


def _writer(path, annotator, n):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), annotator, str(n)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_mid_burst_loses_no_returned_rating(study_path):
    rng = random.Random(0)
    confirmed: list[int] = []
    for _round in range(8):
        p = _writer(study_path, "w1", -1)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(p.pid, signal.SIGKILL)
        # read through the text wrapper: readline() above may have buffered lines that
        # communicate() (which reads the raw pipe) would never see
        out = p.stdout.read()
        p.wait()
        # only lines fully written (ending in a newline) were returned by rate()
        confirmed += [int(x) for x in out.split("\n")[:-1] if x.strip()]
    assert len(confirmed) > 8
    with init_study(study_path) as s:
        assert integrity_check(s) == "ok"
        stored = {r["id"] for r in s.query("SELECT id FROM ratings")}
    assert set(confirmed) <= stored


@pytest.mark.slow
def test_two_processes_write_at_once_without_loss_or_lock_errors(study_path):
    n = 60
    procs = [_writer(study_path, "w1", n), _writer(study_path, "w2", n)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    results = []
    for p in procs:  # stdout through the text wrapper (see above), then stderr, then the exit code
        results.append((p.stdout.read(), p.stderr.read()))
        p.wait(timeout=120)
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "locked" not in err
        assert len(out.split()) == n
    with init_study(study_path) as s:
        assert s.one("SELECT COUNT(*) FROM ratings") == 2 * n
        assert integrity_check(s) == "ok"
