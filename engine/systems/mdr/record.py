"""MDR's registry record: the one place the CLI, the desktop app, the worker and ``memlab eval compare`` learn
about MDR (paper 000)."""

from __future__ import annotations

from engine.systems.registry import Option, SystemRecord


_LOADED: dict = {}
_LOCAL: dict = {}  # the in-process generator copy used when the shared generator is on a server
_LOCK = __import__("threading").Lock()  # agents are built concurrently when the generator is on a server
UNTRAINED = "untrained"


def build(models, options: dict):
    """An :class:`~engine.systems.mdr.agent.MdrAgent` on ``models.generator`` / ``models.encoder`` with the MDR
    checkpoint trained for that generator (``checkpoint`` option, else a user-trained one, else the shipped one)."""
    from engine.backbones.types import DevicePlan, LoadedLM
    from engine.systems.generation import GenerationSettings

    from .agent import MdrAgent, MdrResponder, split_persona
    from .checkpoints import CheckpointError, find_checkpoint, load_model

    generator, encoder = models.generator, models.encoder
    server_note = ""
    if generator is not None and generator.backend is not None:
        # MDR decodes from R(K) as soft-prefix embeddings (Eq. 14): a completions server takes text, so MDR runs
        # on an in-process copy of the served model (loaded once), and says so
        from engine.backbones.loading import load_lm

        src = generator.tokenizer.name_or_path
        with _LOCK:
            if src not in _LOCAL:
                _LOCAL.clear()
                _LOCAL[src] = load_lm(src)
            local = _LOCAL[src]
        server_note = (f"MDR runs in this process on {src}, not on {generator.backend.where}: its decoder reads the "
                       "distilled response feature as input embeddings (Eq. 14), which a completions server does not take")
        generator = local
    if encoder is None:
        raise ValueError("MDR needs a sentence encoder for its teacher and student (paper §3.2)")
    path, note = (options.get("checkpoint") or None), ""
    if path == UNTRAINED:
        from .model import untrained_model

        note = "MDR untrained (checkpoint=untrained): random heads, backbones as loaded — for tests, not for chat"
    elif path:
        note = f"MDR checkpoint given: {path}"
    else:
        path, note = find_checkpoint(generator.name)
        if path is None:
            raise CheckpointError(note)
    key = (str(path), id(generator.model), id(encoder.model))
    with _LOCK:
        if key not in _LOADED:  # one private copy per checkpoint and backbones: a fresh agent per user is cheap
            _LOADED.clear()
            _LOADED[key] = (untrained_model(generator, encoder) if path == UNTRAINED
                            else load_model(path, generator, encoder))
        model, _ = _LOADED[key]
    plan = DevicePlan(generator.plan.device, generator.plan.dtype, False,
                      list(generator.plan.reasons) + [r for r in (server_note,) if r] + [
                          note, "MDR decoder: a private copy of the generator with MDR's LoRA merged in (the shared "
                          "generator is unchanged)"])
    lm = LoadedLM(model.decoder.lm, model.decoder.tokenizer, "causal", generator.name, plan, adapter=str(path))
    base = models.settings or GenerationSettings()
    temperature = float(options.get("temperature", 0.7))
    settings = GenerationSettings(max_new_tokens=int(options.get("max_new_tokens", 32)), do_sample=temperature > 0,
                                  temperature=max(1e-3, temperature), top_p=base.top_p,
                                  repetition_penalty=base.repetition_penalty, seed=base.seed)
    return MdrAgent(MdrResponder(model, lm, settings), persona=split_persona(options.get("persona", "")))


RECORDS = [SystemRecord(
    name="mdr",
    label="MDR",
    help="Memory Distillation and Reproduction: a student encoder distils the teacher's response feature from "
         "persona + selected history; the decoder reproduces it (paper 000)",
    needs=frozenset({"generator", "encoder"}),
    keeps_memory=True,
    capabilities=frozenset(),
    options=(
        Option("persona", str, "", "persona sentences, separated by | (added to the speaker's name and job)"),
        Option("checkpoint", str, "", "MDR checkpoint directory (default: trained here, else shipped; "
                                      "'untrained': random heads, for tests)"),
        Option("temperature", float, 0.7, "sampling temperature; 0 = greedy"),
        Option("max_new_tokens", int, 32, "longest reply in tokens"),
    ),
    build=build,
    train_module="engine.systems.mdr.train",
    order=20,
)]
