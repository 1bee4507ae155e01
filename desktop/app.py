"""``run_app(study=None)``: start the desktop app (the ``memlab`` command with no sub-command).

Opening the window imports Qt and the page being shown, never torch: the engine runs in a worker
process that starts when a model is first needed (see :mod:`desktop.engine_client`).
"""

from __future__ import annotations

import os
import sys


def create_window(study: str | None = None, settings_path=None, data_dir=None):
    """Build the context and main window (a ``QApplication`` must exist). Returns (ctx, window)."""
    from desktop.context import AppContext
    from desktop.main_window import MainWindow

    ctx = AppContext(settings_path=settings_path, data_dir=data_dir)
    if study is None:
        last = ctx.settings.value("studies/last", "")
        if last and os.path.exists(str(last)):
            study = str(last)
    if study:
        ctx.set_study(os.path.abspath(study))
    window = MainWindow(ctx)
    window.restore_geometry()
    page = ctx.settings.value("window/page", "chat")
    if page in window.keys and page != "chat":
        window.show_page(page)
    return ctx, window


def run_app(study: str | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MemLab")
    app.setOrganizationName("MemLab")
    if study and not os.path.exists(study):
        print(f"memlab: no study at {study}; open or create one from the Studies page", file=sys.stderr)
        study = None
    ctx, window = create_window(study)
    window.show()
    return app.exec()
