"""The state the pages share: settings, the open study, the engine client, navigation.

One :class:`AppContext` lives as long as the main window. Pages talk to each other only through
it (signals), never by holding references to one another.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

MAX_RECENT = 8

# Settings keys for the models the engine worker loads (the Models page edits them).
MODEL_KEYS = ("models/lm", "models/encoder", "models/generator_adapter", "models/retriever", "models/load_in_4bit",
              "models/generator_url", "models/served_model", "models/served_adapter")


def engine_installed() -> bool:
    """True when torch can be imported (checked without importing it).

    ``MEMLAB_NO_ENGINE=1`` pretends it is missing (an annotator build, and the tests of that path).
    """
    if os.environ.get("MEMLAB_NO_ENGINE") == "1":
        return False
    return importlib.util.find_spec("torch") is not None


def default_data_dir() -> Path:
    env = os.environ.get("MEMLAB_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("memlab", appauthor=False))


class AppContext(QObject):
    """Settings, the current study and the engine client, shared by every page.

    ``settings_path`` picks an ini file (tests, portable installs); otherwise the platform's
    QSettings store for organisation/application "MemLab".
    """

    study_changed = Signal(str)  # path, '' when closed
    navigate_requested = Signal(str, object)  # page key, payload
    status_message = Signal(str)
    memory_changed = Signal(object)  # a desktop.memory_snapshot.MemorySnapshot
    engine_info_changed = Signal(dict)  # what the worker reported: device, dtype, models, reasons
    engine_state_changed = Signal(str, str)  # the engine client's state and detail

    def __init__(self, settings_path: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        if settings_path is None:
            settings_path = os.environ.get("MEMLAB_SETTINGS")
        if settings_path:
            self.settings = QSettings(str(settings_path), QSettings.Format.IniFormat)
        else:
            self.settings = QSettings("MemLab", "MemLab")
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.engine_available = engine_installed()
        self.study_path: str | None = None
        self.engine_info: dict = {}
        self.memory_snapshot = None  # the last MemorySnapshot shown (MemoryPage reads it when first built)
        self._engine = None

    # -- study -------------------------------------------------------------------------------
    def set_study(self, path: str | os.PathLike | None) -> None:
        self.study_path = str(path) if path else None
        if self.study_path:
            recent = [p for p in self.recent_studies() if p != self.study_path]
            recent.insert(0, self.study_path)
            self.settings.setValue("studies/recent", recent[:MAX_RECENT])
            self.settings.setValue("studies/last", self.study_path)
            self.settings.sync()
        self.study_changed.emit(self.study_path or "")

    def recent_studies(self) -> list[str]:
        value = self.settings.value("studies/recent", [])
        if isinstance(value, str):  # QSettings returns a bare string for a one-element list
            value = [value]
        return [str(v) for v in (value or [])]

    # -- engine ------------------------------------------------------------------------------
    @property
    def engine(self):
        """The :class:`desktop.engine_client.EngineClient` (the worker starts on first request)."""
        if self._engine is None:
            from desktop.engine_client import EngineClient

            self._engine = EngineClient(self.model_config(), parent=self)
            self._engine.info_changed.connect(self._on_engine_info)
            self._engine.state_changed.connect(self.engine_state_changed)
        return self._engine

    def has_engine_client(self) -> bool:
        return self._engine is not None

    def model_config(self) -> dict:
        """Model paths for the worker: settings, overridden by ``MEMLAB_LM`` / ``MEMLAB_ENCODER`` env vars."""
        cfg = {
            "lm": self.settings.value("models/lm", "") or "",
            "encoder": self.settings.value("models/encoder", "") or "",
            # the adapter put on the generator (settings of older versions called it models/emma_adapter)
            "generator_adapter": (self.settings.value("models/generator_adapter", "")
                                  or self.settings.value("models/emma_adapter", "") or ""),
            "retriever": self.settings.value("models/retriever", "") or "",
            "load_in_4bit": str(self.settings.value("models/load_in_4bit", "false")).lower() == "true",
            # an OpenAI-compatible generator server (vLLM, llama.cpp) instead of loading the generator
            "generator_url": self.settings.value("models/generator_url", "") or "",
            "served_model": self.settings.value("models/served_model", "") or "",
            "served_adapter": self.settings.value("models/served_adapter", "") or "",
        }
        cfg["lm"] = os.environ.get("MEMLAB_LM", cfg["lm"])
        cfg["generator_url"] = os.environ.get("MEMLAB_GENERATOR_URL", cfg["generator_url"])
        cfg["encoder"] = os.environ.get("MEMLAB_ENCODER", cfg["encoder"])
        return cfg

    def set_model_config(self, cfg: dict) -> None:
        for key in ("lm", "encoder", "generator_adapter", "retriever", "generator_url", "served_model",
                    "served_adapter"):
            self.settings.setValue(f"models/{key}", cfg.get(key, "") or "")
        self.settings.setValue("models/load_in_4bit", "true" if cfg.get("load_in_4bit") else "false")
        self.settings.sync()
        if self._engine is not None:
            self._engine.set_config(self.model_config())

    def _on_engine_info(self, info: dict) -> None:
        self.engine_info = dict(info)
        self.engine_info_changed.emit(self.engine_info)

    def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()

    # -- navigation --------------------------------------------------------------------------
    def navigate(self, key: str, payload=None) -> None:
        self.navigate_requested.emit(key, payload)

    def status(self, message: str) -> None:
        self.status_message.emit(message)

    def show_memory(self, snapshot, memory_id: str | None = None) -> None:
        """Open the memory page on ``snapshot`` with ``memory_id`` selected."""
        self.memory_snapshot = snapshot
        self.memory_changed.emit(snapshot)
        self.navigate("memory", memory_id)
