"""The systems the app offers, read from the engine's registry (``engine.systems.registry``; torch-free):
the chat page's system box, the compare page's pickers and defaults, labels in the leaderboard.
No system name is written here (docs/architecture.md, "The system registry")."""

from __future__ import annotations


def records() -> list:
    """The registry's records, in display order; none in a build without the engine (the annotator)."""
    try:
        from engine.systems import registry
    except ImportError:
        return []
    return registry.systems()


def label(name: str) -> str:
    """The record's label for ``name``, or ``name`` itself for a system that is no longer registered."""
    for rec in records():
        if rec.name == name:
            return rec.label
    return name


def shows_memory(name: str) -> bool:
    """Whether the system's agents have a memory view (its record's ``memory_view`` capability)."""
    return any(rec.name == name and "memory_view" in rec.capabilities for rec in records())


def compare_defaults(n: int = 4) -> list[str]:
    """The systems the compare page starts with: the first ``n`` in display order."""
    return [rec.name for rec in records()][:n]


def fill_combo(combo, *, with_help: bool = True) -> None:
    """Fill a ``QComboBox`` with (label, name) per system, the one-line help as tooltip."""
    from PySide6.QtCore import Qt

    combo.clear()
    for i, rec in enumerate(records()):
        combo.addItem(rec.label, rec.name)
        if with_help:
            combo.setItemData(i, rec.help, Qt.ItemDataRole.ToolTipRole)
