"""Render every page of the MemLab desktop app with realistic content to PNG (docs/screenshots/).

What is on screen is produced by the real code paths, not mocked:

* **Chat** — a three-session EMMA chat with two partners, replies generated live by the engine
  worker on the configured model (default: the embedded SmolLM2-135M-Instruct), session ends
  running summarisation and linking; the chat is then saved into the study as a live-chat episode.
* **Compare** — EMMA and the session-summary baseline, blind (A/B), answering the same turn.
* **Memory** — the egocentric memory and link graph of that live chat (what EMMA stored and linked in
  the three sessions), one linked node selected; only with ``--no-engine`` the starter-corpus episode
  with the most memories is shown instead (the window title says which).
* **Models** — device, dtype and loaded models as reported by the worker.
* **Annotate** — one item of each kind (session transcript, memory sentence, memory pair on the
  link graph, utterance with its tagged memory) from real campaigns in a real study database.
* **Studies** — data (starter corpus + a ConvAI2 slice + the saved chat), campaigns, progress,
  agreement tables and charts.

The ratings behind the agreement screenshots come from *simulated annotators* (seeded: each
item gets a latent pass/Likert value and each annotator reports it with a fixed error rate), written
through :func:`annotation.ratings.rate` like real ones; the figures are computed from them.

Usage: ``.venv/bin/python tools/screenshots.py [--out docs/screenshots] [--no-engine]``
(``--no-engine`` skips Chat/Compare generation; those pages are then shown empty).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATASETS = ROOT.parent / "shared" / "datasets"
SIZE = (1280, 820)


# --- the study ----------------------------------------------------------------------------------
def build_study(path: Path, log) -> dict:
    """A study with starter-corpus episodes, a ConvAI2 slice, campaigns, annotators, ratings."""
    import json

    from annotation.campaigns import add_annotator, create_campaign
    from annotation.db import init_study
    from annotation.importer import import_episodes, import_file
    from engine.data.corpus.generator import generate_episodes

    episodes = generate_episodes(8, seed=7)
    with init_study(path) as study:
        import_episodes(study, episodes, file="starter corpus (generated, seed 7)")
        convai2 = DATASETS / "convai2" / "personachat_valid.json"
        if convai2.exists():
            part = path.parent / "personachat_slice.json"
            part.write_text(json.dumps(json.loads(convai2.read_text(encoding="utf-8"))[:40]), encoding="utf-8")
            import_file(study, part, "convai2")
        starter = [e.id for e in episodes]
        create_campaign(study, "memory-round-1", "memory", groups=3, overlap="split", episodes=starter[:3], seed=1)
        create_campaign(study, "dialogue-quality", "dataset", groups=3, unit="session", episodes=starter[3:5], seed=2)
        people = {"A": ["Amara", "Anton"], "B": ["Bea", "Bruno"], "C": ["Chen", "Carla"]}
        for group, names in people.items():
            for name in names:
                add_annotator(study, name, group)  # joins every campaign with that group
        log("simulating annotators…")
        everyone = [n for ns in people.values() for n in ns]
        simulate_ratings(study, "memory-round-1", everyone, leave={"Amara": 9})
        simulate_ratings(study, "dialogue-quality", everyone, leave={"Amara": 2})
    return {"episodes": episodes}


def simulate_ratings(study, campaign: str, annotators: list[str], *, error: float = 0.12, leave: dict | None = None) -> None:
    """Seeded simulated annotators: a latent value per item, reported with probability 1 − error."""
    from annotation.queue import next_item
    from annotation.ratings import rate

    for name in annotators:
        rng = random.Random(f"{campaign}:{name}")
        budget = (leave or {}).get(name, 1_000_000)  # an annotator left mid-queue (resumes later)
        while budget > 0:
            item = next_item(study, campaign, name)
            if item is None:
                break
            budget -= 1
            for c in item.criteria:
                latent_rng = random.Random(f"{campaign}:{item.key}:{c.name}")
                if c.scale == "likert":
                    latent = latent_rng.choice([3, 4, 4, 5, 5])
                    value = latent if rng.random() > error else max(1, min(5, latent + rng.choice([-1, 1])))
                else:
                    latent = 1 if latent_rng.random() < 0.8 else 0
                    value = latent if rng.random() > error else 1 - latent
                rate(study, campaign, name, item.item_id, c.name, value, seconds=round(rng.uniform(4, 40), 1))


# --- driving the window -----------------------------------------------------------------------------
class Shooter:
    def __init__(self, app, window, out: Path, log):
        self.app, self.window, self.out, self.log = app, window, out, log
        self.files: list[Path] = []

    def wait(self, cond, timeout: float, what: str) -> bool:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                self.log(f"  timed out waiting for {what}")
                return False
            self.app.processEvents()
            time.sleep(0.01)
        return True

    def settle(self, seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.app.processEvents()
            time.sleep(0.01)

    def shot(self, name: str) -> Path:
        self.settle()
        path = self.out / f"{name}.png"
        self.window.grab().save(str(path))
        self.files.append(path)
        self.log(f"  wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path


def run_chat(s: Shooter, ctx) -> None:
    chat = s.window.show_page("chat")
    s.log("chat: starting EMMA (loads the model in the worker)…")
    chat.new_chat("emma", {"name": "Alice", "job": "teacher"}, {"name": "Bob", "job": "Alice's brother, a chef"})
    # Ready = no request in flight in the engine client, nothing streaming, the input enabled.
    ready = lambda: (not ctx.engine.busy() and chat.streaming is None and not chat.busy()
                     and chat.send_button.isEnabled())
    if not s.wait(ready, 900, "the agent"):
        return
    script = [
        ("send", "Hi Alice! I just opened my own little restaurant downtown. It's called Basil."),
        ("send", "The hardest part is the early mornings at the fish market."),
        ("session", {"name": "Carol", "job": "colleague, a nurse"}),
        ("send", "Morning Alice! I am moving to Lisbon next month for a new job at a hospital."),
        ("send", "I am nervous about learning Portuguese."),
        ("session", {"name": "Bob", "job": "Alice's brother, a chef"}),
        ("send", "Alice, my restaurant Basil got its first review in the paper today!"),
        ("send", "Do you remember what my restaurant is called?"),
    ]
    for what, arg in script:
        if what == "send":
            s.log(f"  user: {arg[:50]}…")
            chat.send(arg)
        else:
            s.log(f"  new session with {arg['name']} (summarise + link)…")
            chat.new_session(arg)
        s.settle(0.5)
        s.wait(ready, 900, what)
    s.shot("chat")
    s.live_memory = chat.memory_snapshot()
    s.log("  saving the chat into the study…")
    chat.finish_chat()


def run_compare(s: Shooter, ctx) -> None:
    page = s.window.show_page("compare")
    s.log("compare: EMMA vs summary baseline, blind…")
    page.start(["emma", "summary"], {"name": "Alice", "job": "teacher"}, {"name": "Bob", "job": "Alice's brother, a chef"},
               blind=True, seed=3)
    done = lambda: not ctx.engine.busy()
    s.wait(done, 900, "compare agents")
    page.send("Hi Alice! I just opened my own little restaurant downtown. Want to come to the opening?")
    s.wait(done, 900, "compare replies")
    s.shot("compare")


def run_memory(s: Shooter, ctx, episodes) -> None:
    from desktop.memory_snapshot import MemorySnapshot

    live = getattr(s, "live_memory", None)
    if live is not None and live.memories:
        linked = [src for src, _dst, _kind in live.links]
        pick = linked[0] if linked else live.memories[-1].id
        s.log(f"memory: the live chat's {len(live.memories)} memories, {len(live.links)} links")
        ctx.show_memory(live, pick)
        s.settle(1.0)
        s.shot("memory")
        return
    ep = max(episodes, key=lambda e: len(e.memories))
    s.log(f"memory: {ep.id} with {len(ep.memories)} memories, {len(ep.links)} links")
    snap = MemorySnapshot.from_episode(ep, title=f"starter corpus {ep.id}")
    pick = next((l.src for l in ep.links if any(l2.dst == l.src for l2 in ep.links)), ep.memories[-1].id)
    ctx.show_memory(snap, pick)
    s.settle(1.0)
    s.shot("memory")


def run_annotate(s: Shooter) -> None:
    page = s.window.show_page("annotate")
    page.refresh_campaigns()
    page.sign_in("memory-round-1", "Amara", "A")
    wanted = {"memory": "annotate-memory", "link": "annotate-link", "tag": "annotate-tag"}
    shown = set()
    for i in range(page.item.total if page.item else 0):
        page.show_index(i)
        if page.item.target in wanted and page.item.target not in shown:
            shown.add(page.item.target)
            if page.item.target == "memory" and not page.cards[0].value:
                pass
            s.shot(wanted[page.item.target])
        if len(shown) == len(wanted):
            break
    # resume where Amara stopped (the first unfinished item), then a Likert session item
    page.sign_out()
    page.sign_in("memory-round-1", "Amara", "A")
    s.shot("annotate-resume")
    page.sign_out()
    page.sign_in("dialogue-quality", "Amara", "A")
    page.give_rating(page.cards[0].criterion.name, 4)
    s.shot("annotate-session")
    page.sign_out()


def run_studies(s: Shooter) -> None:
    page = s.window.show_page("studies")
    page.refresh()
    page.campaign_combo.setCurrentText("memory-round-1")
    for i, name in enumerate(("studies-data", "studies-campaigns", "studies-progress")):
        page.tabs.setCurrentIndex(i)
        s.shot(name)
    page.tabs.setCurrentIndex(3)
    page.compute_agreement()
    s.wait(lambda: not page.busy(), 300, "agreement")
    s.shot("studies-agreement")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="render every page of the app to PNG")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--no-engine", action="store_true", help="skip live generation (Chat, Compare)")
    ap.add_argument("--workdir", help="keep the study and settings here (default: a temporary folder)")
    ap.add_argument("--only", help="comma-separated pages to shoot (chat, memory, compare, models, annotate, studies); "
                                   "default: all")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="memlab-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, flush=True)

    study_path = work / "study.db"
    if study_path.exists():
        study_path.unlink()
    log(f"building the study {study_path}…")
    built = build_study(study_path, log)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MemLab")
    from desktop.app import create_window

    ctx, window = create_window(str(study_path), settings_path=work / "settings.ini", data_dir=work / "data")
    window.resize(*SIZE)
    window.show()
    s = Shooter(app, window, out, log)
    only = set(args.only.split(",")) if args.only else None
    want = lambda page: only is None or page in only  # noqa: E731
    if not args.no_engine and ctx.engine_available:
        if want("chat") or want("memory"):
            run_chat(s, ctx)
        if want("compare"):
            run_compare(s, ctx)
        if want("models"):
            s.window.show_page("models")
            s.settle(1.0)
            s.shot("models")
    else:
        log("engine skipped: Chat/Compare/Models shown without generation")
        for key in ("chat", "compare", "models"):
            if want(key):
                s.window.show_page(key)
                s.shot(key)
    if want("memory"):
        run_memory(s, ctx, built["episodes"])
    if want("annotate"):
        run_annotate(s)
    if want("studies"):
        run_studies(s)
    ctx.shutdown()
    log(f"{len(s.files)} screenshots in {out}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
