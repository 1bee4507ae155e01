"""The system registry (docs/architecture.md, "The system registry"): one :class:`SystemRecord` per system,
the only place a system's name is written.

Discovery: every package ``engine/systems/<folder>/`` with a ``record.py`` defining ``RECORDS = [...]`` (a
folder may define several, e.g. the baselines), plus the folders named in the environment variable
``MEMLAB_SYSTEMS_PATH`` (``os.pathsep``-separated; a folder that holds a ``record.py`` itself, or whose
sub-folders do).  The CLI's ``--agent`` choices, ``memlab train``, the desktop's system lists, the compare page
and the engine worker's ``list_systems`` request all read :func:`systems`.

Records are torch-free: ``record.py`` imports its system's model code inside ``build``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ENV_PATH = "MEMLAB_SYSTEMS_PATH"
ROLES = ("generator", "encoder")  # model roles the CLI and the worker load from their configuration
_HERE = Path(__file__).resolve().parent
_EXT_PACKAGE = "memlab_ext_systems"


class RegistryError(ValueError):
    """A record is malformed, two records share a name, or a name/option is unknown; the message says which."""


@dataclass(frozen=True)
class Option:
    """One typed, defaulted option of a system (``memlab chat --set NAME=VALUE``, the worker's ``options``)."""

    name: str
    type: type
    default: object
    help: str
    choices: tuple | None = None

    def coerce(self, value, system: str = ""):
        """``value`` as this option's type (strings from the command line are parsed); error names the option."""
        where = f"option {self.name!r} of {system!r}" if system else f"option {self.name!r}"
        if self.type is bool and isinstance(value, str):
            low = value.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise RegistryError(f"{where}: {value!r} is not a yes/no value")
            value = low in ("1", "true", "yes", "on")
        elif not (isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))):
            try:
                if self.type is int and isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = self.type(value)
            except (TypeError, ValueError):
                what = {int: "an integer", float: "a number", str: "a string"}.get(self.type, self.type.__name__)
                raise RegistryError(f"{where}: {value!r} is not {what}") from None
        if self.choices is not None and value not in self.choices:
            raise RegistryError(f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}")
        return value


@dataclass
class Models:
    """What a record's ``build`` gets: the loaded models of the roles it ``needs`` (shared between agents),
    ready-made components keyed by name (e.g. ``"retriever"``: a published EMMA retriever), the generation
    settings (``engine.systems.generation.GenerationSettings``; ``None``: the defaults), and ``cache``: models a
    system loads itself (a teacher/student pair, a checkpoint), kept by the engine worker across agents."""

    generator: object = None  # engine.backbones.types.LoadedLM
    encoder: object = None  # engine.backbones.types.LoadedEncoder | None
    components: dict = field(default_factory=dict)
    settings: object = None
    cache: dict = field(default_factory=dict)

    def shared(self, key: str, load: Callable[[], object]):
        """``load()`` once per ``key`` for every agent built on these models (e.g. ``("mdr-teacher", path)``)."""
        if key not in self.cache:
            self.cache[key] = load()
        return self.cache[key]


@dataclass(frozen=True)
class SystemRecord:
    name: str  # "emma", "no-memory", ... (the only place a system's name is written)
    label: str  # "EMMA"
    help: str  # one line
    needs: frozenset  # model roles to load: {"generator"} or {"generator", "encoder"}
    keeps_memory: bool
    capabilities: frozenset  # subset of engine.agent.CAPABILITIES
    options: tuple  # tuple[Option, ...]
    build: Callable  # (Models, dict of validated options) -> Agent
    train_module: str | None = None  # dotted module with register(train_subparsers): `memlab train <name>...`
    order: int = 100  # display order
    source: str = ""  # the record.py it came from (set by discovery)

    def defaults(self) -> dict:
        return {o.name: o.default for o in self.options}

    def validate(self, options: dict) -> dict:
        """The defaults overlaid with ``options``, each coerced to its type; an unknown name is an error."""
        known = {o.name: o for o in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            have = ", ".join(known) or "none"
            raise RegistryError(f"system {self.name!r} has no option {unknown[0]!r} (its options: {have})")
        out = self.defaults()
        out.update({k: known[k].coerce(v, self.name) for k, v in options.items()})
        return out

    def to_dict(self) -> dict:
        """Plain data (for the worker's ``list_systems`` reply and the UI)."""
        return {"name": self.name, "label": self.label, "help": self.help, "needs": sorted(self.needs),
                "keeps_memory": self.keeps_memory, "capabilities": sorted(self.capabilities),
                "options": [{"name": o.name, "type": o.type.__name__, "default": o.default, "help": o.help,
                             "choices": list(o.choices) if o.choices is not None else None} for o in self.options],
                "train_module": self.train_module, "order": self.order}


_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def _check(rec, source: str) -> SystemRecord:
    from engine.agent import CAPABILITIES

    if not isinstance(rec, SystemRecord):
        raise RegistryError(f"{source}: RECORDS holds {type(rec).__name__}, not a SystemRecord")
    if not _NAME.match(rec.name):
        raise RegistryError(f"{source}: system name {rec.name!r} must be lower-case letters, digits and '-'")
    bad = set(rec.capabilities) - CAPABILITIES
    if bad:
        raise RegistryError(f"{source}: system {rec.name!r} declares unknown capabilities {sorted(bad)} "
                            f"(known: {sorted(CAPABILITIES)})")
    for o in rec.options:
        if o.type not in (int, float, str, bool):
            raise RegistryError(f"{source}: option {o.name!r} of {rec.name!r} has type {o.type!r} (int|float|str|bool)")
    return SystemRecord(**{**rec.__dict__, "source": source})


def _record_modules():
    """(module name, record.py path) for the built-in folders, then the MEMLAB_SYSTEMS_PATH ones."""
    for folder in sorted(p for p in _HERE.iterdir() if (p / "record.py").is_file()):
        yield f"engine.systems.{folder.name}.record", folder / "record.py"
    for entry in filter(None, os.environ.get(ENV_PATH, "").split(os.pathsep)):
        root = Path(entry).expanduser().resolve()
        if (root / "record.py").is_file():
            folders = [root]
        elif root.is_dir():
            folders = sorted(p for p in root.iterdir() if (p / "record.py").is_file())
        else:
            continue  # a folder that is gone lists nothing
        for folder in folders:
            yield _external_package(folder) + ".record", folder / "record.py"


def _external_package(folder: Path) -> str:
    """Register ``folder`` as a package (so its modules can import each other relatively)."""
    if _EXT_PACKAGE not in sys.modules:
        root = types.ModuleType(_EXT_PACKAGE)
        root.__path__ = []
        sys.modules[_EXT_PACKAGE] = root
    slug = re.sub(r"\W", "_", folder.name) + "_" + format(abs(hash(str(folder))) % 10**8, "08d")
    name = f"{_EXT_PACKAGE}.{slug}"
    if name not in sys.modules:
        init = folder / "__init__.py"
        if init.is_file():
            spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:  # a folder without __init__.py is a package all the same
            module = types.ModuleType(name)
            module.__path__ = [str(folder)]
            sys.modules[name] = module
    return name


def systems() -> list[SystemRecord]:
    """Every registered system, in display order (``order``, then name)."""
    found: dict[str, SystemRecord] = {}
    for modname, path in _record_modules():
        try:
            module = importlib.import_module(modname)
        except ImportError as e:
            raise RegistryError(f"{path}: cannot import the system record ({e})") from e
        records = getattr(module, "RECORDS", None)
        if not isinstance(records, (list, tuple)):
            raise RegistryError(f"{path}: defines no RECORDS list")
        for rec in records:
            rec = _check(rec, str(path))
            if rec.name in found:
                raise RegistryError(f"system {rec.name!r} is defined twice: {found[rec.name].source} and {path}")
            found[rec.name] = rec
    return sorted(found.values(), key=lambda r: (r.order, r.name))


def names() -> list[str]:
    return [r.name for r in systems()]


def get(name: str) -> SystemRecord:
    for rec in systems():
        if rec.name == name:
            return rec
    raise RegistryError(f"unknown system {name!r}; choose one of {', '.join(names())}")


def build_agent(name: str, models: Models, **options):
    """Build system ``name`` on ``models`` with ``options`` validated against its record."""
    rec = get(name)
    missing = [role for role in sorted(rec.needs) if role in ROLES and getattr(models, role, None) is None
               and not (role == "encoder" and "retriever" in models.components)]
    if missing:
        what = {"generator": "language model (generator)", "encoder": "sentence encoder"}[missing[0]]
        raise RegistryError(f"system {name!r} needs a {what} (its record's needs: {', '.join(sorted(rec.needs))})")
    return rec.build(models, rec.validate(options))


def make_agent(name: str, lm, encoder=None, **opts):
    """Older entry point: ``make_agent(name, lm, encoder, settings=, retriever=, memory_encoder=, **options)``."""
    components = {k: opts.pop(k) for k in ("retriever", "memory_encoder") if opts.get(k) is not None}
    for k in ("retriever", "memory_encoder"):
        opts.pop(k, None)
    models = Models(generator=lm, encoder=encoder, components=components, settings=opts.pop("settings", None))
    return build_agent(name, models, **opts)
