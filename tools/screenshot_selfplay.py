"""Screenshot of a self-play episode on the Annotate page (docs/screenshots/annotate-selfplay.png).

Imports a ``memlab selfplay`` output into a fresh study as a model-quality campaign (the same call as
``memlab selfplay --study --campaign`` and the Studies page: :func:`desktop.study_bridge.import_selfplay`),
signs an annotator in and grabs the first item (a whole six-session episode rated for Humanness,
Engagingness and Memorability, EMMA §5.3).

Usage: ``.venv/bin/python tools/screenshot_selfplay.py SELFPLAY.json [--out docs/screenshots]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("selfplay", help="a memlab selfplay output file")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="memlab-selfplay-shot-"))
    from annotation.campaigns import add_annotator
    from desktop.study_bridge import import_selfplay

    study = work / "study.db"
    result, camp = import_selfplay(study, args.selfplay, "model-quality-selfplay")
    print(f"imported {result.episodes} episodes; campaign {camp.name}: {camp.n_items} items")
    add_annotator(study, "Amara", "A", camp.name)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from desktop.app import create_window
    from screenshots import SIZE, Shooter

    ctx, window = create_window(str(study), settings_path=work / "settings.ini", data_dir=work / "data")
    window.resize(*SIZE)
    window.show()
    s = Shooter(app, window, Path(args.out), print)
    page = window.show_page("annotate")
    page.refresh_campaigns()
    page.sign_in(camp.name, "Amara", "A")
    s.settle(0.5)
    s.shot("annotate-selfplay")
    ctx.shutdown()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
