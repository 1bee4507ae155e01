"""``memlab``: the one console entry point.

With no sub-command it opens the desktop app. Sub-commands are registered by the packages that
own them (``annotation.cli``, ``engine.cli``), so the desktop app and the command line call the
same functions. Nothing heavy (torch, Qt) is imported until a command needs it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# Each module exposes ``register(subparsers)``; a missing optional part is skipped, not fatal.
COMMAND_MODULES = ("annotation.cli", "engine.cli", "desktop.engine_serve")  # engine_serve: memlab engine serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memlab",
        description="MemLab: live-chat with memory-augmented dialogue agents, annotate, measure agreement.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    app = sub.add_parser("app", help="open the desktop app (the default)")
    app.add_argument("--study", help="study database to open")
    app.set_defaults(func=_run_app)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as e:  # an optional part not installed
            if e.name and e.name.split(".")[0] in ("engine", "annotation"):
                continue
            raise
        module.register(sub)
    # engine commands that write into a study (selfplay --study, eval compare --study) reach the annotation
    # side through this composition point; the engine itself never imports annotation
    if importlib.util.find_spec("annotation") is not None:
        from desktop import study_bridge

        parser.set_defaults(study_sink=study_bridge)
    return parser


def _run_app(args) -> int:
    from desktop.app import run_app

    return run_app(study=getattr(args, "study", None))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        return _run_app(args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
