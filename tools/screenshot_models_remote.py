"""docs/screenshots/models-remote.png: the Models page connected to a remote engine.

Starts ``memlab engine serve`` as its own process (the embedded default models: SmolLM2-135M-Instruct
with the shipped EMMA adapter, MiniLM), opens the app window, connects the Models page by URL and
token, loads the models and runs one EMMA turn on the remote engine, then grabs the window.

Usage: ``.venv/bin/python tools/screenshot_models_remote.py [--out docs/screenshots]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args(argv)
    for k, v in (("QT_QPA_PLATFORM", "offscreen"), ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
        os.environ.setdefault(k, v)
    work = Path(tempfile.mkdtemp(prefix="memlab-remote-"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen([sys.executable, "-m", "desktop.cli", "engine", "serve", "--port", "0",
                               "--token-file", str(work / "token")], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split()[-1]
        server.stdout.readline()
        token = (work / "token").read_text().strip()
        print(f"engine at {url}", flush=True)

        from PySide6.QtWidgets import QApplication

        from desktop.app import create_window
        from screenshots import SIZE, Shooter

        app = QApplication.instance() or QApplication(sys.argv[:1])
        ctx, window = create_window(None, settings_path=work / "settings.ini", data_dir=work / "data")
        window.resize(*SIZE)
        window.show()
        s = Shooter(app, window, Path(args.out), lambda m: print(m, flush=True))
        page = window.show_page("models")
        page.remote_token.setText(token)
        if not page.connect_remote(url):
            print(f"could not connect: {ctx.engine.last_error}", file=sys.stderr)
            return 1
        box = {}
        ctx.engine.request("create_agent", agent="remote-chat", system="emma", main={"name": "Alice", "job": "teacher"},
                           on_done=lambda r: box.setdefault("created", r), on_error=lambda e: box.setdefault("error", e))
        s.wait(lambda: box, 600, "agent")
        ctx.engine.request("start_session", agent="remote-chat", partner={"name": "Bob", "job": "neighbour"}, index=0)
        ctx.engine.request("respond", agent="remote-chat", text="I just adopted a cat called Milo!",
                           on_done=lambda r: box.setdefault("reply", r), on_error=lambda e: box.setdefault("error", e))
        s.wait(lambda: "reply" in box or "error" in box, 600, "reply")
        print("reply:", (box.get("reply") or {}).get("reply"), box.get("error", ""), flush=True)
        page.refresh()
        s.wait(lambda: "remote-chat" in page.details.toPlainText(), 60, "info")
        s.shot("models-remote")
        ctx.shutdown()
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
