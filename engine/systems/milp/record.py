"""MiLP's registry records (docs/architecture.md, "The system registry"): MiLP itself and its two baselines
on the same backbone (MiLP §3.2: TpLP, MaLP-style retrieval memory)."""

from __future__ import annotations

from engine.systems.registry import Option, SystemRecord

from .config import TrainSettings
from .paths import shipped_instruct_dir, shipped_theta


def _num_layers(lm) -> int:
    cfg = lm.model.config
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(getattr(cfg, attr, None), int):
            return getattr(cfg, attr)
    raise ValueError(f"cannot tell how many layers {lm.name} has")


_TRAINING_COPIES: dict = {}
_COPY_LOCK = __import__("threading").Lock()


def _training_copy(backbone_dir: str):
    """The in-process backbone MiLP trains on when replies come from a generator server: loaded once (eval
    compare and self-play build an agent per user or seat, several at a time)."""
    from engine.backbones.loading import load_lm

    with _COPY_LOCK:
        if backbone_dir not in _TRAINING_COPIES:
            _TRAINING_COPIES.clear()
            _TRAINING_COPIES[backbone_dir] = load_lm(backbone_dir)
        return _TRAINING_COPIES[backbone_dir]


def build_milp(models, options: dict):
    import dataclasses

    from .agent import MilpAgent
    from .config import Theta
    from .model import AdapterBank
    from .responder import PersonalResponder

    lm = dataclasses.replace(models.generator)  # MiLP wraps .model in peft; the other systems keep theirs
    remote = None
    if lm.backend is not None:
        # replies on the generator server (per-partner LoRA per request, .served); the adapters are trained
        # on an in-process copy of the same backbone (the served model's tokenizer directory)
        remote = dataclasses.replace(lm, adapter=None)  # MiLP's own adapters, never another system's served LoRA
        backbone_dir = lm.tokenizer.name_or_path
        lm = dataclasses.replace(_training_copy(backbone_dir))
        lm.plan = dataclasses.replace(lm.plan, reasons=list(lm.plan.reasons) + [
            f"MiLP trains its per-partner adapters on this in-process {backbone_dir}; replies come from {remote.where}"])
    if hasattr(lm.model, "peft_config"):
        # the shared generator carries another system's adapter (e.g. EMMA's): MiLP's memories go on its own
        # copy of the plain backbone (that adapter's layers removed, not merged), said in the plan's reasons
        from .model import plain_copy

        other = lm.adapter or ", ".join(lm.model.peft_config)
        lm.model = plain_copy(lm.model)
        lm.plan = dataclasses.replace(lm.plan, reasons=list(lm.plan.reasons) + [
            f"MiLP runs on its own copy of the plain {lm.name}: the loaded generator carries another adapter ({other})"])
        lm.adapter = None
    layers = _num_layers(lm)
    theta, source = shipped_theta(layers)
    if options["theta"]:
        import json

        theta, source = Theta.from_dict(json.loads(options["theta"])), "option theta"
    if theta is None or len(theta.alpha) != layers:
        theta, source = Theta.all_layers(layers, 1, 8), f"default: LoRA on all {layers} FFN layers, n=1, r=8"
    instruct = None if options["no_instruct"] else shipped_instruct_dir(lm.name)
    bank = AdapterBank(lm, instruct)
    settings = TrainSettings(lr=options["lr"], max_steps=options["steps"], epochs=max(1, options["steps"]),
                             max_seconds=0.9 * options["budget_s"], batch_size=options["batch_size"],
                             max_input_tokens=256)
    served = None
    if remote is not None:
        from pathlib import Path

        from .served import ServedMemories

        served = ServedMemories(remote, bank, base_config=Path(remote.tokenizer.name_or_path) / "config.json")
    return MilpAgent(PersonalResponder(remote or lm, models.settings), bank, theta, train_settings=settings,
                     theta_source=source, served=served)


def build_tplp(models, options: dict):
    from .baselines import TplpAgent
    from .responder import PersonalResponder

    return TplpAgent(PersonalResponder(models.generator, models.settings, "What they told you before"))


def build_malp(models, options: dict):
    from .baselines import MalpAgent
    from .responder import PersonalResponder

    if models.encoder is None:
        raise ValueError("the MaLP baseline retrieves with a sentence encoder; none is loaded")
    return MalpAgent(PersonalResponder(models.generator, models.settings, "Relevant earlier turns"),
                     models.encoder, k=options["k"])


RECORDS = [
    SystemRecord(
        name="milp", label="MiLP",
        help="MiLP: each partner's history in their own FFN LoRA adapter, trained at session end (MiLP §2)",
        needs=frozenset({"generator"}), keeps_memory=True, capabilities=frozenset({"adapters", "rewind"}),
        options=(Option("budget_s", float, 90.0, "seconds to train a partner's adapter at session end (eval compare --budget-s)"),
                 Option("steps", int, 8, "optimizer steps per session end (at most)"),
                 Option("lr", float, 2e-3, "AdamW learning rate (§3.4: 5e-4; higher for few CPU steps)"),
                 Option("batch_size", int, 4, "examples per step"),
                 Option("theta", str, "", "θ as JSON {alpha, n, r} (default: the shipped search result)"),
                 Option("no_instruct", bool, False, "leave the shipped instruction adapter off (§4.4 ablation)")),
        build=build_milp, train_module="engine.systems.milp.train", order=60),
    SystemRecord(
        name="tplp", label="TpLP", help="text-prompt personalisation: the partner's earlier turns in the prompt (MiLP §3.2)",
        needs=frozenset({"generator"}), keeps_memory=True, capabilities=frozenset({"rewind"}), options=(),
        build=build_tplp, order=61),
    SystemRecord(
        name="malp-rag", label="MaLP-style",
        help="retrieval memory: the partner's earlier turns most similar to the context in the prompt (MiLP §3.2)",
        needs=frozenset({"generator", "encoder"}), keeps_memory=True, capabilities=frozenset({"rewind"}),
        options=(Option("k", int, 3, "earlier turns retrieved per reply"),),
        build=build_malp, order=62),
]
