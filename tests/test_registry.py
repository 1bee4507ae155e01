"""The system registry: records are well formed, options are typed and validated, unknown names are clear
errors, and no system name is written anywhere but in its own folder (the registry is the only list)."""

import ast
from pathlib import Path

import pytest

from engine.systems import registry

ROOT = Path(__file__).resolve().parents[1]


def test_every_record_is_complete_and_names_are_unique():
    from engine.agent import CAPABILITIES

    recs = registry.systems()
    assert len({r.name for r in recs}) == len(recs) >= 5
    for r in recs:
        assert r.label and r.help and r.source.endswith("record.py")
        assert r.capabilities <= CAPABILITIES and r.needs <= {"generator", "encoder"}
        assert registry.get(r.name) == r
        assert r.to_dict()["name"] == r.name


def test_options_are_typed_and_validated():
    rag = registry.get("rag")
    assert rag.validate({}) == {"k": 3}
    assert rag.validate({"k": "5"}) == {"k": 5}
    with pytest.raises(ValueError, match="option 'k' of 'rag': 'many' is not an integer"):
        rag.validate({"k": "many"})
    with pytest.raises(ValueError, match="no option 'depth'.*its options: k"):
        rag.validate({"depth": 2})
    emma = registry.get("emma")
    assert emma.validate({"link_threshold": "0.7"})["link_threshold"] == 0.7


def test_unknown_system_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown system 'memgpt'; choose one of emma"):
        registry.get("memgpt")


def test_a_duplicate_name_is_an_error_naming_both_files(tmp_path, monkeypatch):
    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "record.py").write_text(
        "from engine.systems.registry import SystemRecord\n"
        "RECORDS = [SystemRecord(name='emma', label='x', help='x', needs=frozenset(), keeps_memory=False,\n"
        "                        capabilities=frozenset(), options=(), build=lambda m, o: None)]\n")
    monkeypatch.setenv("MEMLAB_SYSTEMS_PATH", str(folder))
    with pytest.raises(ValueError, match=r"'emma' is defined twice: .*emma/record.py and .*dup/record.py"):
        registry.systems()


def _string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_system_name_is_written_outside_its_own_folder():
    """The CLI, the desktop, the worker and the other systems read the registry; they never spell a name."""
    owners = {r.name: Path(r.source).resolve().parent for r in registry.systems()}
    found = []
    for package in ("engine", "desktop", "annotation"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, value in _string_constants(path):
                if value in owners and not path.resolve().is_relative_to(owners[value]):
                    found.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    assert not found, "system names written outside their folder:\n" + "\n".join(found)


def test_models_shared_loads_once_per_key():
    models, loads = registry.Models(), []
    first = models.shared("teacher", lambda: loads.append(1) or object())
    assert models.shared("teacher", lambda: loads.append(2) or object()) is first and loads == [1]
