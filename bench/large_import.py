"""Benchmark: streaming import of a ~200 MB ConvAI2 file into a fresh study.

Builds the file (once) by repeating the real ConvAI2 validation dialogues
(``../shared/datasets/convai2/personachat_valid.json``) until it holds ``--dialogues`` of them
(default 224,000 ≈ 3 M turns), then measures, each in its own child process so peak memory is
its own:

* ``ours`` — :func:`annotation.importer.import_file`: parse, validate and insert in one pass in
  one transaction (wall seconds, peak RSS);
* ``reference`` — what the old path did before inserting anything: read the whole file and
  build every episode (``engine.data.readers.read_any``), no database.

Goals (issue 13): ours ≤ 60 s and ≤ 0.5 GB peak. CPU seconds are printed beside wall seconds:
on a shared machine the wall time says as much about the neighbours as about the import. Prints one JSON line per measurement and a
summary line with the ratio; medians over ``--repeats`` runs.

    python bench/large_import.py [--dialogues 224000] [--repeats 1] [--work /tmp/memlab-bench]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "datasets" / "convai2" / "personachat_valid.json"


def build_file(out: Path, dialogues: int) -> Path:
    """Write a JSON list of ``dialogues`` ConvAI2 dialogues by cycling the real ones."""
    if out.exists() and out.with_suffix(".count").exists() and out.with_suffix(".count").read_text() == str(dialogues):
        return out
    base = json.loads(SOURCE.read_text(encoding="utf-8"))
    encoded = [json.dumps(d, ensure_ascii=False) for d in base]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i in range(dialogues):
            f.write(("," if i else "") + encoded[i % len(encoded)] + "\n")
        f.write("]\n")
    out.with_suffix(".count").write_text(str(dialogues))
    return out


CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
mode, path, db = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
ticks = []
if mode == "ours":
    from annotation.db import init_study
    from annotation.importer import import_file
    with init_study(db) as s:
        r = import_file(s, path, progress=lambda d, n: ticks.append(d))
    extra = {{"episodes": r.episodes, "turns": r.turns, "memories": r.memories, "progress_updates": len(ticks)}}
else:
    from engine.data.readers import read_any
    eps = read_any(path)
    extra = {{"episodes": len(eps), "turns": sum(len(s.turns) for e in eps for s in e.sessions)}}
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(extra, seconds=wall, cpu_seconds=ru.ru_utime + ru.ru_stime, peak_rss_mb=ru.ru_maxrss / 1024)))
"""


def run_child(mode: str, path: Path, db: Path) -> dict:
    if db.exists():
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            p.unlink(missing_ok=True)
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), mode, str(path), str(db)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dialogues", type=int, default=224_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", default="/tmp/memlab-bench")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args(argv)
    work = Path(args.work)
    path = build_file(work / f"convai2-{args.dialogues}.json", args.dialogues)
    size_mb = path.stat().st_size / 2**20
    results = {"ours": [], "reference": []}
    for _ in range(args.repeats):
        for mode in ("ours",) + (() if args.no_reference else ("reference",)):
            r = run_child(mode, path, work / "bench-study.db")
            r.update(mode=mode, file_mb=round(size_mb, 1))
            print(json.dumps(r), flush=True)
            results[mode].append(r)
    ours = results["ours"]
    summary = {"summary": "large_import", "file_mb": round(size_mb, 1), "dialogues": args.dialogues,
               "ours_seconds_median": statistics.median(r["seconds"] for r in ours),
               "ours_cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in ours),
               "ours_peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in ours),
               "load_average_1min": round(__import__("os").getloadavg()[0], 2),
               "goal_seconds": 60, "goal_peak_mb": 512}
    if results["reference"]:
        ref = results["reference"]
        summary["reference_seconds_median"] = statistics.median(r["seconds"] for r in ref)
        summary["reference_cpu_seconds_median"] = statistics.median(r["cpu_seconds"] for r in ref)
        summary["reference_peak_rss_mb_median"] = statistics.median(r["peak_rss_mb"] for r in ref)
        summary["memory_ratio_ours_over_reference"] = round(summary["ours_peak_rss_mb_median"] / summary["reference_peak_rss_mb_median"], 3)
        summary["time_ratio_ours_over_reference"] = round(summary["ours_seconds_median"] / summary["reference_seconds_median"], 3)
    summary["met"] = summary["ours_seconds_median"] <= 60 and summary["ours_peak_rss_mb_median"] <= 512
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
