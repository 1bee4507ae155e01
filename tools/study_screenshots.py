"""Screenshots of the study owner's and annotator's side, and every page of the PDF report.

Writes to docs/screenshots/: ``compare-leaderboard.png`` (a leaderboard with enough votes),
``annotate-consistency.png`` (a ConvAI2 consistency item with its persona), ``studies-agreement.png``
(the agreement table at the default window size) and ``report-page-<n>.png`` for every page of the
campaign's PDF report. The app runs at its default window size (1200 × 800).

What is simulated, and said so on screen or in the data: the study is the one
``tools/screenshots.py`` builds (starter corpus + a real ConvAI2 slice), its ratings come from
seeded *simulated annotators* (written through :func:`annotation.ratings.rate`), and the Compare
votes come from a seeded *simulated voter* (Bradley–Terry strengths, stored through the Compare
page's own store with ``voter = "simulated voter (seeded)"``). The figures are computed from them.

Usage: ``.venv/bin/python tools/study_screenshots.py [--out docs/screenshots] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
DEFAULT_SIZE = (1200, 800)  # desktop.main_window.MainWindow.restore_geometry without saved geometry
SIMULATED_VOTER = "simulated voter (seeded)"


def simulate_votes(data_dir: Path, study: Path, n: int = 150, seed: int = 5) -> None:
    """Seeded pairwise votes among three systems (true strengths 3 : 2 : 1, 15 % ties)."""
    from desktop import compare_store

    strengths = {"emma": 3.0, "summary": 2.0, "no-memory": 1.0}
    rng = random.Random(seed)
    names = list(strengths)
    for _ in range(n):
        a, b = rng.sample(names, 2)
        r = rng.random()
        outcome = "tie" if r < 0.15 else ("left" if rng.random() < strengths[a] / (strengths[a] + strengths[b]) else "right")
        compare_store.append_vote(data_dir, a, b, outcome, blind=True, transcript={"simulated": True},
                                  study_path=study, voter=SIMULATED_VOTER)


def convai2_consistency_campaign(study_path: Path) -> str:
    from annotation.campaigns import create_campaign
    from annotation.content import episode_ids

    ids = episode_ids(study_path, "convai2")[:6]
    create_campaign(study_path, "persona-consistency", "dataset", groups=3, unit="session", episodes=ids, seed=4)
    return "persona-consistency"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--workdir")
    ap.add_argument("--campaign", default="memory-round-1", help="the campaign whose PDF report is rendered")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["MEMLAB_NO_ENGINE"] = "1"  # nothing here needs a model
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="memlab-study-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, flush=True)

    from screenshots import Shooter, build_study

    study_path = work / "study.db"
    for p in work.glob("study.db*"):
        p.unlink()
    log(f"building the study {study_path} (simulated annotators)…")
    build_study(study_path, log)
    consistency = convai2_consistency_campaign(study_path)
    log("simulating Compare votes…")
    simulate_votes(work / "data", study_path)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from desktop.app import create_window

    ctx, window = create_window(str(study_path), settings_path=work / "settings.ini", data_dir=work / "data")
    window.resize(*DEFAULT_SIZE)
    window.show()
    s = Shooter(app, window, out, log)

    page = window.show_page("compare")
    page.refresh_leaderboard()
    page.tabs.setCurrentIndex(1)
    s.shot("compare-leaderboard")

    page = window.show_page("annotate")
    page.refresh_campaigns()
    page.sign_in(consistency, "Amara", "A")
    s.shot("annotate-consistency")
    page.sign_out()

    page = window.show_page("studies")
    page.refresh()
    page.campaign_combo.setCurrentText(args.campaign)
    page.tabs.setCurrentIndex(3)
    page.compute_agreement()
    s.wait(lambda: not page.busy(), 300, "agreement")
    s.shot("studies-agreement")

    from annotation.report import write_report

    pdf = write_report(study_path, args.campaign, work / f"{args.campaign}-report.pdf")
    for old in out.glob("report-page-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-png", "-r", "80", str(pdf), str(out / "report-page")], check=True)
    for p in sorted(out.glob("report-page-*.png")):  # pdftoppm pads page numbers: report-page-1.png, …
        n = int(p.stem.rsplit("-", 1)[1])
        p.rename(out / f"report-page-{n}.png")
        log(f"  wrote {out / f'report-page-{n}.png'}")
    log(f"PDF: {pdf}")
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
