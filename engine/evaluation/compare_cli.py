"""``memlab eval compare``: the same held-out turns answered by several systems, one table.

    memlab eval compare --systems emma,summary,rag,no-memory,full-history --data valid.json --limit 100
    memlab eval compare --systems milp,no-memory --data malp.json --format malp --budget-s 60 --json

Prints a Markdown table (values ×100 with 95% bootstrap intervals) and writes it with a PNG chart, the
per-answer records (JSON Lines; a re-run with the same --out continues after them) and the JSON report
into --out. With --json, stdout is one object {"n": N, "systems": {name: {metric: value,
"<metric>_ci": [lo, hi]}}, "meta": {...}}. With --study the report is also stored in that study database.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FORMATS = ("auto", "memlab", "convai2", "locomo", "malp")
DEFAULT_COUNT = 5  # EMMA and the four baselines of the paper's setting: the registry's first five


def default_systems() -> str:
    """The first five systems in the registry's display order that run on the shared models."""
    from engine.systems import registry

    return ",".join([r.name for r in registry.systems() if r.needs][:DEFAULT_COUNT])


def register(esub) -> None:
    p = esub.add_parser("compare", help="every system answers the same held-out turns; one table with 95% CIs",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=default_systems(),
                   help="comma-separated registry names (default: %(default)s)")
    p.add_argument("--data", required=True, help="episodes: memlab-episode/1, ConvAI2, LoCoMo or MaLP")
    p.add_argument("--format", default="auto", choices=FORMATS, help="data format (default: detected)")
    p.add_argument("--limit", type=int, help="first N held-out turns (one per episode)")
    p.add_argument("--budget-s", type=float, help="seconds a per-user-training system may train per user")
    p.add_argument("--samples", type=int, default=5, help="sampled responses per query for S-Dist (default 5; 0: none)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", help="folder for table.md, compare.png, report.json, records.jsonl "
                                 "(default compare-<data name>)")
    p.add_argument("--title", help="table/chart title (default: the data file name)")
    p.add_argument("--set", action="append", default=[], metavar="SYSTEM.NAME=VALUE",
                   help="a system option, e.g. --set rag.k=5 (repeatable)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="reply length limit (default 40)")
    p.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed (default 0)")
    p.add_argument("--lm", help="generator: HF id or directory (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--encoder", help="sentence encoder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--adapter", default="auto", help="generator adapter: auto (default), none, or a directory")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--classifier", help="consistency classifier directory; 'none' skips Con.S (default: shipped)")
    p.add_argument("--score-only", action="store_true",
                   help="score the answers already in --out/records.jsonl (an interrupted run); load no model")
    p.add_argument("--study", help="also store the report in this study database")
    p.add_argument("--campaign", help="with --study: the campaign the report belongs to")
    from engine.backbones.server import add_server_args

    add_server_args(p)
    p.set_defaults(func=run)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_system_options(pairs: list[str], systems: list[str]) -> dict[str, dict]:
    out = {s: {} for s in systems}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        system, dot, name = key.partition(".")
        if not eq or not dot or not name.strip():
            raise ValueError(f"--set {pair!r}: expected SYSTEM.NAME=VALUE, e.g. rag.k=5")
        if system not in out:
            raise ValueError(f"--set {pair!r}: {system!r} is not one of --systems ({', '.join(systems)})")
        out[system][name.strip()] = value.strip()
    return out


def run(args) -> int:
    from engine.backbones.server import ServerError, server_options
    from engine.backbones.types import ModelNotFoundError
    from engine.data.errors import DataFormatError
    from engine.data.readers import read_any
    from engine.evaluation.job import compare_job
    from engine.evaluation.loading import SystemBuilder
    from engine.systems.registry import RegistryError

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems:
        _err("error: --systems is empty")
        return 2
    if args.limit is not None and args.limit < 1:
        _err("error: --limit must be at least 1")
        return 2
    try:
        options = parse_system_options(args.set, systems)
        read_any(args.data, args.format)  # bad data is reported before any model loads
    except (ValueError, DataFormatError, OSError) as e:
        _err(f"error: {e}")
        return 2
    try:
        builder = None if args.score_only else SystemBuilder.load(
            systems, options, lm=args.lm, encoder=args.encoder, adapter=args.adapter, device=args.device,
            max_new_tokens=args.max_new_tokens, budget_s=args.budget_s, server=server_options(args), log=_err)
    except (RegistryError, ModelNotFoundError, ServerError, ValueError) as e:
        _err(f"error: {e}")
        return 1
    out = Path(args.out or f"compare-{Path(args.data).stem}")

    from tqdm import tqdm

    bar = tqdm(unit="answer", desc="eval compare", file=sys.stderr, dynamic_ncols=True)

    def progress(stage, done, total):
        bar.total = total
        bar.n = done
        bar.set_postfix_str(stage[:60], refresh=False)
        bar.refresh()

    try:
        res = compare_job(builder, data=args.data, systems=systems, format=args.format, limit=args.limit,
                          samples=args.samples, budget_s=args.budget_s, out=out, seed=args.seed,
                          classifier=args.classifier, device=args.device, title=args.title or "",
                          progress=progress, score_only=args.score_only)
    except (DataFormatError, ValueError, OSError) as e:
        bar.close()
        _err(f"error: {e}")
        return 2
    bar.close()
    for n in res["notes"][:5]:
        _err(f"note: {n}")
    report = res["report"]
    if args.limit and report["meta"]["queries"] < args.limit:
        _err(f"note: {args.data} gives {report['meta']['queries']} held-out turns, fewer than --limit {args.limit}")
    if args.json:
        print(json.dumps(report, indent=1, allow_nan=False, default=str))
    else:
        print(res["table"])
        print(f"wrote {out / 'table.md'}, {res['png'] or '(no chart: nothing scored)'}, {out / 'report.json'} "
              f"in {res['seconds']:.0f} s")
    if args.study:
        sink = getattr(args, "study_sink", None)
        if sink is None:
            _err("error: --study needs MemLab's annotation part (memlab[all]); the report is in "
                 f"{out / 'report.json'}")
            return 1
        try:
            where = sink.store_eval_report(args.study, report, campaign=args.campaign)
        except ValueError as e:
            _err(f"error: {e}")
            return 1
        _err(f"stored the report in {args.study} ({where})")
    return 0
