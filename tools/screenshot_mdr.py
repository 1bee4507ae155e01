"""Render a short live MDR chat in the desktop app to ``docs/screenshots/chat-mdr.png``.

The real app and engine worker: the Chat page starts an MDR chat (the shipped MDR for the embedded default,
or one trained on this machine), the replies are generated live, a partner switch starts a second session, and
each MDR turn lists the history it was given (Eq. 7's selection and the last turn).  Reuses the driver of
``tools/screenshots.py``.

MDR's persona in the app is the main speaker's name and job ("My name is Sam. I am a mechanic.").

Usage: ``.venv/bin/python tools/screenshot_mdr.py [--out docs/screenshots]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCRIPT = [
    ("send", "Hi Sam! How was your weekend? Did you go out on the lake?"),
    ("send", "Nice. I have never been fishing. What do you catch there?"),
    ("session", {"name": "Maya", "job": "Sam's colleague, a nurse"}),
    ("send", "Good morning Sam! Busy night shift. Do you have plans for Saturday?"),
    ("send", "Fishing again? You really love the lake, don't you?"),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tools.screenshots import SIZE, Shooter

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="memlab-mdr-shot-"))
    log = lambda m: print(m, flush=True)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MemLab")
    from desktop.app import create_window

    ctx, window = create_window(None, settings_path=work / "settings.ini", data_dir=work / "data")
    window.resize(*SIZE)
    window.show()
    s = Shooter(app, window, out, log)
    chat = s.window.show_page("chat")
    log("chat: starting MDR (loads the models in the worker)…")
    chat.main_name.setText("Sam")
    chat.main_job.setText("mechanic")
    chat.new_chat("mdr", {"name": "Sam", "job": "mechanic"}, {"name": "Leo", "job": "Sam's neighbour"})
    ready = lambda: (not ctx.engine.busy() and chat.streaming is None and not chat.busy()
                     and chat.send_button.isEnabled())
    if not s.wait(ready, 1200, "the agent"):
        ctx.shutdown()
        return 1
    for what, arg in SCRIPT:
        if what == "send":
            log(f"  user: {arg}")
            chat.send(arg)
        else:
            log(f"  new session with {arg['name']}…")
            chat.new_session(arg)
        s.settle(0.5)
        s.wait(ready, 1200, what)
    s.shot("chat-mdr")
    ctx.shutdown()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
