"""Run study I/O off the UI thread (QThreadPool) and get progress and the result back as signals.

A :class:`Task` wraps a plain function. When the function accepts a ``progress`` keyword it is
given a callable ``progress(done, total)`` that emits :attr:`TaskSignals.progress` (queued to the
UI thread). The result arrives in :attr:`TaskSignals.finished`, an exception in
:attr:`TaskSignals.failed`. Functions that touch SQLite must open their own connection inside the
task (``sqlite3`` connections belong to the thread that uses them).
"""

from __future__ import annotations

import inspect
import traceback

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class TaskSignals(QObject):
    progress = Signal(int, int)
    finished = Signal(object)
    failed = Signal(object)  # the exception; ``.traceback_text`` holds the formatted traceback


class Task(QRunnable):
    def __init__(self, fn, *args, **kwargs):
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = TaskSignals()
        self.setAutoDelete(False)  # the caller keeps it alive until a result arrives
        try:
            params = inspect.signature(fn).parameters
            self._wants_progress = "progress" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            self._wants_progress = False

    def run(self) -> None:
        kwargs = dict(self.kwargs)
        if self._wants_progress and "progress" not in kwargs:
            kwargs["progress"] = self.signals.progress.emit
        try:
            result = self.fn(*self.args, **kwargs)
        except BaseException as e:  # noqa: BLE001 — every failure is reported to the UI
            e.traceback_text = traceback.format_exc()
            self.signals.failed.emit(e)
        else:
            self.signals.finished.emit(result)


_running: set[Task] = set()


def start(fn, *args, on_done=None, on_error=None, on_progress=None, **kwargs) -> Task:
    """Start ``fn(*args, **kwargs)`` on the global thread pool; callbacks run on the UI thread."""
    task = Task(fn, *args, **kwargs)
    _running.add(task)

    def _release(*_):
        _running.discard(task)

    if on_progress:
        task.signals.progress.connect(on_progress)
    if on_done:
        task.signals.finished.connect(on_done)
    if on_error:
        task.signals.failed.connect(on_error)
    task.signals.finished.connect(_release)
    task.signals.failed.connect(_release)
    QThreadPool.globalInstance().start(task)
    return task


def busy() -> bool:
    return bool(_running)
