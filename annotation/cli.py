"""``memlab study …`` and ``memlab agreement …`` (issue 2 §7). Handlers call the same public
functions the desktop app uses; errors print one clear message and exit with status 2."""

from __future__ import annotations

import json
import sys

from engine.data.errors import DataFormatError

from .db import StudyError

EXIT_BAD_INPUT = 2


def _guard(fn):
    def run(args):
        try:
            return fn(args)
        except (DataFormatError, StudyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return run


def _progress(label):
    if not sys.stderr.isatty():
        return None

    def report(done, total):
        print(f"\r{label}: {done}/{total}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
    return report


@_guard
def cmd_init(args):
    from .db import SCHEMA_VERSION, init_study

    with init_study(args.study) as s:
        print(f"study {s.path} ready (schema version {SCHEMA_VERSION})")
    return 0


@_guard
def cmd_import(args):
    from .importer import import_file

    r = import_file(args.study, args.file, args.format, progress=_progress("importing"))
    print(f"imported {r.episodes} episodes ({r.format}): {r.sessions} sessions, {r.turns} turns, "
          f"{r.memories} memories, {r.links} links, {r.tags} tags from {r.file}")
    return 0


@_guard
def cmd_info(args):
    from .campaigns import list_campaigns
    from .db import open_study

    with open_study(args.study) as s:
        counts = {t: s.db[t].count for t in ("episodes", "sessions", "turns", "memories", "memory_links",
                                              "memory_tags", "annotators", "ratings")}
        print(f"study {s.path}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        for c in list_campaigns(s):
            print(f"  campaign {c.name!r}: preset {c.preset}, {c.n_items} items, groups {', '.join(c.groups)}, "
                  f"overlap {c.overlap}, criteria {', '.join(x.name for x in c.criteria)}")
    return 0


def _custom_criteria(specs):
    from .campaigns import Criterion

    out = []
    for spec in specs or []:
        parts = spec.split(":", 3)
        if len(parts) < 3:
            raise StudyError(f"--criterion {spec!r}: write NAME:likert|passfail:TARGET[:definition]")
        name, scale, target = (p.strip() for p in parts[:3])
        out.append(Criterion(name, name.replace("_", " ").title(), scale, target, parts[3].strip() if len(parts) > 3 else ""))
    return out


@_guard
def cmd_campaign_create(args):
    from .campaigns import create_campaign

    episodes = [e.strip() for e in args.episodes.split(",") if e.strip()] if args.episodes else None
    c = create_campaign(args.study, args.name, args.preset, groups=args.groups, overlap=args.overlap,
                        unit=args.unit, episodes=episodes, sample=args.sample, seed=args.seed,
                        criteria=_custom_criteria(args.criterion))
    print(f"campaign {c.name!r} ({c.preset}): {c.n_items} items, groups {', '.join(c.groups)}, overlap {c.overlap}; "
          f"criteria: {', '.join(f'{x.name} ({x.scale}, per {x.target})' for x in c.criteria)}"
          + (f"\n  note: {c.description}" if c.description else ""))
    return 0


@_guard
def cmd_campaign_list(args):
    return cmd_info(args)


@_guard
def cmd_annotator_add(args):
    from .accounts import create_account
    from .campaigns import add_annotator

    if args.role == "reviewer":
        create_account(args.study, args.name, role="reviewer", pin=args.pin)
        print(f"reviewer account {args.name!r} created")
        return 0
    if not args.group:
        raise StudyError("an annotator needs --group (a reviewer: --role reviewer)")
    joined = add_annotator(args.study, args.name, args.group, args.campaign, pin=args.pin)
    where = f"campaign(s) {', '.join(joined)}" if joined else "no campaign yet (joins later campaigns with that group)"
    print(f"annotator {args.name!r} in group {args.group!r} of {where}")
    return 0


@_guard
def cmd_annotator_list(args):
    from .accounts import list_accounts

    for a in list_accounts(args.study):
        print(f"{a.name}\t{a.role}\t{'PIN' if a.has_pin else 'no PIN'}\t{a.default_group or ''}")
    return 0


@_guard
def cmd_campaign_close(args):
    from .review import close_campaign, reopen_campaign

    if args.reopen:
        reopen_campaign(args.study, args.name)
        print(f"campaign {args.name!r} is open for rating again")
    else:
        print(f"campaign {args.name!r} closed at {close_campaign(args.study, args.name)}; reviewers can start")
    return 0


@_guard
def cmd_ratings_import(args):
    from .ratings import import_ratings_csv

    n = import_ratings_csv(args.study, args.campaign, args.csv, progress=_progress("ratings"))
    print(f"imported {n} ratings into campaign {args.campaign!r}")
    return 0


@_guard
def cmd_package(args):
    from .packages import package_annotator

    info = package_annotator(args.study, args.campaign, args.annotator, args.out, overwrite=args.force)
    print(f"wrote {args.out}: {info.annotator}'s queue in campaign {info.campaign!r} (group {info.group}), "
          f"{len(info.item_hashes)} items")
    return 0


@_guard
def cmd_merge(args):
    from .packages import merge_packages

    reports = merge_packages(args.study, args.packages, progress=_progress("merging"))
    for r in reports:
        print(r)
    print(f"merged {len(reports)} package(s): {sum(r.added for r in reports)} rating(s) added")
    return 0


def _print_agreement(result, as_json):
    from .agreement import format_table

    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(format_table(result))


@_guard
def cmd_study_agreement(args):
    from .agreement import agreement_for_study

    _print_agreement(agreement_for_study(args.study, args.campaign, bootstrap=args.bootstrap), args.json)
    return 0


@_guard
def cmd_report(args):
    from .report import write_report

    out = write_report(args.study, args.campaign, args.out, bootstrap=args.bootstrap, progress=_progress("report"))
    print(f"wrote {out}")
    return 0


@_guard
def cmd_agreement(args):
    from .agreement import agreement_for_csv

    _print_agreement(agreement_for_csv(args.csv, bootstrap=args.bootstrap), args.json)
    return 0


def register(sub) -> None:
    """Add ``study`` and ``agreement`` to the ``memlab`` sub-commands."""
    study = sub.add_parser("study", help="study databases: import, campaigns, annotators, ratings, agreement, reports")
    ss = study.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    p = ss.add_parser("init", help="create a study file")
    p.add_argument("study", metavar="STUDY.db")
    p.set_defaults(func=cmd_init)

    p = ss.add_parser("import", help="import episodes (all-or-nothing)")
    p.add_argument("study", metavar="STUDY.db")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=("auto", "memlab", "convai2", "locomo", "misc"), default="auto")
    p.set_defaults(func=cmd_import)

    p = ss.add_parser("info", help="what a study holds")
    p.add_argument("study", metavar="STUDY.db")
    p.set_defaults(func=cmd_info)

    camp = ss.add_parser("campaign", help="create or list campaigns")
    cs = camp.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    p = cs.add_parser("create", help="create a campaign from a MiSC preset (or custom criteria)")
    p.add_argument("study", metavar="STUDY.db")
    p.add_argument("--name", required=True)
    p.add_argument("--preset", choices=("dataset", "memory", "model", "custom"), required=True)
    p.add_argument("--groups", type=int, default=3, help="number of independent groups (default 3)")
    p.add_argument("--overlap", default="split",
                   help="annotators per item inside a group: split (1, the default), full (all) or a number")
    p.add_argument("--unit", choices=("session", "episode"), default="session",
                   help="dataset preset: rate each session (default) or each episode")
    p.add_argument("--sample", type=int, help="draw this many episodes at random (default: all)")
    p.add_argument("--episodes", help="comma-separated episode ids")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--criterion", action="append", metavar="NAME:SCALE:TARGET[:DEFINITION]",
                   help="custom criterion (preset custom); SCALE likert|passfail; TARGET episode|session|memory|link|tag")
    p.set_defaults(func=cmd_campaign_create)
    p = cs.add_parser("list", help="list campaigns")
    p.add_argument("study", metavar="STUDY.db")
    p.set_defaults(func=cmd_campaign_list)
    p = cs.add_parser("close", help="close rating (reviewers then see flags and disagreement); --reopen undoes it")
    p.add_argument("study", metavar="STUDY.db")
    p.add_argument("name", metavar="CAMPAIGN")
    p.add_argument("--reopen", action="store_true")
    p.set_defaults(func=cmd_campaign_close)

    ann = ss.add_parser("annotator", help="manage annotators")
    asub = ann.add_subparsers(dest="annotator_command", metavar="ACTION", required=True)
    p = asub.add_parser("add", help="add an annotator account (names compared ignoring case) to a group")
    p.add_argument("study", metavar="STUDY.db")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--group", help="the group the annotator rates in (not for reviewers)")
    p.add_argument("--campaign", help="only this campaign (default: every campaign with that group, and later ones)")
    p.add_argument("--pin", help="optional PIN asked on the Annotate page (stored hashed)")
    p.add_argument("--role", choices=("annotator", "reviewer"), default="annotator")
    p.set_defaults(func=cmd_annotator_add)
    p = asub.add_parser("list", help="list the study's accounts")
    p.add_argument("study", metavar="STUDY.db")
    p.set_defaults(func=cmd_annotator_list)

    rat = ss.add_parser("ratings", help="import ratings")
    rsub = rat.add_subparsers(dest="ratings_command", metavar="ACTION", required=True)
    p = rsub.add_parser("import", help="import a ratings CSV (item,criterion,annotator,group,value), all-or-nothing")
    p.add_argument("study", metavar="STUDY.db")
    p.add_argument("--campaign", required=True)
    p.add_argument("csv", metavar="RATINGS.csv")
    p.set_defaults(func=cmd_ratings_import)

    p = ss.add_parser("package", help="export one annotator's queue as a package file to rate on another machine")
    p.add_argument("study", metavar="STUDY.db")
    p.add_argument("--annotator", required=True, metavar="NAME")
    p.add_argument("--campaign", help="the campaign (default: the annotator's only campaign)")
    p.add_argument("--out", required=True, metavar="FILE.memlab")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=cmd_package)

    p = ss.add_parser("merge", help="append the ratings of returned annotator packages (idempotent, all-or-nothing)")
    p.add_argument("study", metavar="STUDY.db")
    p.add_argument("packages", nargs="+", metavar="FILE.memlab")
    p.set_defaults(func=cmd_merge)

    p = ss.add_parser("agreement", help="agreement figures of a campaign")
    p.add_argument("study", metavar="STUDY.db")
    p.add_argument("--campaign", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the α interval (0 = none)")
    p.set_defaults(func=cmd_study_agreement)

    p = ss.add_parser("report", help="write a report: .csv, .json, .html or .pdf")
    p.add_argument("study", metavar="STUDY.db")
    p.add_argument("--campaign", required=True)
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("agreement", help="agreement statistics for a ratings CSV collected anywhere")
    p.add_argument("csv", metavar="RATINGS.csv")
    p.add_argument("--json", action="store_true")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.set_defaults(func=cmd_agreement)
