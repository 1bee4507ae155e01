"""DESIGN.md import rules, checked statically (every module's imports) and dynamically (sys.modules)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "PyQt5", "PyQt6", "shiboken6")
TORCHY = ("torch", "transformers", "peft", "bitsandbytes", "botorch", "accelerate", "safetensors.torch")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, _imports(path)


def _hits(names, banned):
    return sorted(n for n in names if any(n == b or n.startswith(b + ".") for b in banned))


def test_annotation_imports_neither_torch_qt_nor_engine_model_code():
    bad = {}
    for path, names in _modules("annotation"):
        hits = _hits(names, QT + TORCHY)
        hits += [n for n in names if n.startswith("engine") and not (
            n in ("engine", "engine.data", "engine.memory") or n.startswith(("engine.data.", "engine.memory.")))]
        hits += _hits(names, ("desktop",))
        if hits:
            bad[str(path.relative_to(ROOT))] = hits
    assert not bad, f"annotation/ may import only engine.data and engine.memory, no torch/Qt: {bad}"


def test_engine_never_imports_desktop_annotation_or_qt():
    bad = {}
    for path, names in _modules("engine"):
        hits = _hits(names, QT + ("desktop", "annotation"))
        if hits:
            bad[str(path.relative_to(ROOT))] = hits
    assert not bad, f"engine/ must not import desktop, annotation or Qt: {bad}"


def test_data_and_memory_are_torch_free_modules():
    bad = {}
    for package in ("engine/data", "engine/memory"):
        for path, names in _modules(package):
            hits = _hits(names, TORCHY + QT)
            if hits:
                bad[str(path.relative_to(ROOT))] = hits
    assert not bad, f"engine.data and engine.memory must stay torch-free: {bad}"


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_annotation_and_data_loads_no_torch_or_qt():
    code = (
        "import sys, pkgutil, importlib, annotation, engine.data, engine.memory\n"
        "for pkg in (annotation, engine.data, engine.memory):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(k for k in ('torch', 'transformers', 'PySide6') if k in sys.modules))"
    )
    assert _run(code) == "[]"


def test_importing_desktop_loads_no_torch():
    code = (
        "import sys, pkgutil, importlib, desktop\n"
        "for m in pkgutil.walk_packages(desktop.__path__, 'desktop.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    assert _run(code) == "False False"
