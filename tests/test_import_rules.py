"""The import rules of docs/architecture.md ("Packages and import rules"), checked statically (every module's
imports, the module graph) and dynamically (sys.modules)."""

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


# ---------------------------------------------------------------------------------------------- module graph
PACKAGES = ("engine", "desktop", "annotation")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _graph(*, top_level_only: bool) -> dict[str, set[str]]:
    """Module → the project modules it imports (``top_level_only``: at import time, not inside functions)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        nodes = _top_level(tree) if top_level_only else ast.walk(tree)
        targets: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path.name == "__init__.py", node)
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:  # "a.b.c" may be a name inside module "a.b"
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    targets.add(name)
        graph[mod] = targets
    return graph


def _top_level(tree):
    """Import statements that run when the module is imported (module body, including if/try blocks)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.ClassDef):
            stack.extend(node.body)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            stack.extend(getattr(node, field, []) or [])


def _is_package_edge(src: str, dst: str) -> bool:
    """A package's ``__init__`` importing its own submodules (re-exports) is not a cycle between modules."""
    return src.startswith(dst + ".") or dst.startswith(src + ".")


def test_no_import_cycles_between_modules():
    import networkx as nx

    g = nx.DiGraph()
    for src, dsts in _graph(top_level_only=False).items():
        g.add_node(src)
        g.add_edges_from((src, d) for d in dsts if not _is_package_edge(src, d))
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, f"modules that import each other (directly or in a ring): {cycles}"


def _system_folders():
    return sorted(p for p in (ROOT / "engine" / "systems").iterdir() if p.is_dir() and (p / "__init__.py").exists())


def test_a_systems_inference_code_never_imports_engine_training():
    """config/model/agent/checkpoints (everything but train*.py) of every system, and all they import."""
    graph = _graph(top_level_only=False)
    bad = {}
    for folder in _system_folders():
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("train"):
                continue
            start = _module_name(path)
            seen, todo = set(), [start]
            while todo:
                mod = todo.pop()
                if mod in seen:
                    continue
                seen.add(mod)
                todo.extend(d for d in graph.get(mod, ()) if not d.rpartition(".")[2].startswith("train")
                            or not d.startswith("engine.systems."))
            hits = sorted(m for m in seen if m == "engine.training" or m.startswith("engine.training."))
            if hits:
                bad[start] = hits
    assert not bad, f"a system's inference code reaches engine/training: {bad}"
