"""MemLab's PySide6 desktop app (see :mod:`desktop.app`)."""

from desktop.qt_compat import protect_none as _protect_none

_protect_none()  # before any Qt call: PySide6 6.12 on CPython 3.11 under-counts None (see qt_compat)
