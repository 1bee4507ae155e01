"""Work around a reference-count bug of PySide6/shiboken6 6.12 on CPython 3.11.

Measured here (PySide6-Essentials 6.12.0, CPython 3.11.7): every call of a Qt method that returns
``void`` — ``QWidget.setEnabled``, ``QLabel.setText``, ``QTextCursor.insertText``,
``QApplication.processEvents`` … — drops one reference to ``None`` without taking one (1,000
``setEnabled`` calls → ``sys.getrefcount(None)`` down by 1,000). ``None`` starts with a few
thousand references, so after a few thousand such calls — one streamed chat reply — the
interpreter aborts with ``Fatal Python error: none_dealloc``. 6.11.3 does not do this, and
CPython 3.12 made ``None`` immortal (PEP 683), which hides it.

:func:`protect_none` gives ``None`` the same immortality on an affected combination by raising its
reference count by 2**48 once (it can then never reach zero). It does nothing elsewhere.
"""

from __future__ import annotations

import sys

_applied = False


def affected(version: str, python: tuple = sys.version_info[:2]) -> bool:
    """True for shiboken6 ≥ 6.12 on CPython < 3.12."""
    if python >= (3, 12) or sys.implementation.name != "cpython":
        return False
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 12)


def protect_none() -> bool:
    """Apply the work-around if this interpreter and shiboken6 need it; returns whether it did."""
    global _applied
    if _applied:
        return True
    try:
        from importlib.metadata import PackageNotFoundError, version

        shiboken = version("shiboken6")
    except (ImportError, PackageNotFoundError):
        return False
    if not affected(shiboken):
        return False
    import ctypes

    ctypes.c_ssize_t.from_address(id(None)).value += 1 << 48  # ob_refcnt is PyObject's first field
    _applied = True
    return True
