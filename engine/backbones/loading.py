"""Load a generator LM (causal or seq2seq), a BERT-family sentence encoder, or a peft adapter, with the
device policy of ``device.py`` and the source rules of ``sources.py``.

The same code path serves every size: the embedded SmolLM2-135M default, FLAN-T5 for EMMA (paper 001 §4.1),
GPT-2 for MDR (paper 000 §3), LLaMA-family models for MiLP (paper 003 §4), and tiny random models in tests.
"""

from __future__ import annotations

import os

from .device import bnb_config, plan_device, torch_dtype
from .encoding import encode  # noqa: F401  (re-exported: ``from engine.backbones.loading import encode``)
from .sources import ModelSource, resolve
from .types import DevicePlan, LoadedEncoder, LoadedLM, ModelNotFoundError

KINDS = ("causal", "seq2seq")
POOLINGS = ("mean", "cls")


def _default_hint(name: str) -> str | None:
    """The embedded default's own advice, when ``name`` is its directory."""
    from .embedded import default_lm_path

    try:
        if os.path.abspath(os.path.expanduser(name)) == str(default_lm_path()):
            return "The embedded default is not prepared yet: run `memlab models prepare` (about a minute, offline)."
    except Exception:
        return None
    return None


def _load_or_explain(what: str, src: ModelSource, loader, *args, **kwargs):
    """Call a ``from_pretrained`` and turn a file/format failure into ModelNotFoundError naming the model."""
    try:
        return loader(*args, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise ModelNotFoundError(f"{what} {src.name!r} ({src.origin} {src.location}) could not be loaded: {e}") from e


def _pretrained_kwargs(src: ModelSource) -> dict:
    kw = {"local_files_only": src.local}
    if src.safetensors:
        kw["use_safetensors"] = True
    return kw


def detect_kind(config) -> str:
    """"seq2seq" for encoder–decoder configs (T5, BART, ...), else "causal"."""
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def load_lm(name_or_path, *, kind: str | None = None, quantize_4bit: bool = False, adapter=None,
            allow_pickle: bool = False, device: str | None = None) -> LoadedLM:
    """Load tokenizer and model of any Hugging Face causal or seq2seq LM by hub id or local directory.

    ``kind`` None detects it from the config; ``quantize_4bit`` asks for bitsandbytes NF4 (CUDA only, the
    QLoRA setting of EMMA's training); ``adapter`` is a peft adapter directory/id loaded on top;
    ``allow_pickle`` permits ``pytorch_model.bin``-style weights; ``device`` None/"auto"/"cpu"/"cuda[:N]".
    Raises ModelNotFoundError (naming the model and how to get it) without waiting on the hub.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be None, 'causal' or 'seq2seq', not {kind!r}")
    name = os.fspath(name_or_path)
    src = resolve(name, allow_pickle=allow_pickle, what="model", hint=_default_hint(name))
    plan = plan_device(quantize_4bit=quantize_4bit, device=device)
    config = _load_or_explain("model", src, AutoConfig.from_pretrained, src.location, local_files_only=src.local)
    detected = detect_kind(config)
    if kind is not None and kind != detected:
        raise ValueError(f"model {name!r} is a {detected} LM ({type(config).__name__}), but kind={kind!r} was asked for")
    kind = detected

    model_cls = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    kwargs = _pretrained_kwargs(src) | {"dtype": torch_dtype(plan)}
    if plan.load_in_4bit:
        kwargs |= {"quantization_config": bnb_config(plan), "device_map": {"": plan.device}}
    model = _load_or_explain("model", src, model_cls.from_pretrained, src.location, **kwargs)
    if not plan.load_in_4bit:
        model = model.to(plan.device)
    model.eval()
    tokenizer = _load_or_explain("tokenizer of", src, AutoTokenizer.from_pretrained, src.location,
                                 local_files_only=src.local)
    reasons = [f"loaded {kind} LM {type(model).__name__} from {src.describe()}"]
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        reasons.append(f"the tokenizer has no pad token: padding with its end token {tokenizer.eos_token!r}")
    plan = DevicePlan(plan.device, plan.dtype, plan.load_in_4bit, plan.reasons + reasons)
    lm = LoadedLM(model=model, tokenizer=tokenizer, kind=kind, name=name, plan=plan)
    if adapter is not None:
        attach_adapter(lm, adapter, allow_pickle=allow_pickle)
    return lm


def attach_adapter(lm: LoadedLM, adapter, *, allow_pickle: bool = False, trainable: bool = False) -> LoadedLM:
    """Load a peft adapter (e.g. a LoRA saved with ``save_pretrained``) onto ``lm.model`` in place.

    The adapter weights must be safetensors unless ``allow_pickle``. Records the adapter in ``lm.adapter``
    and a reason line (type, rank, target modules) in ``lm.plan.reasons``.
    """
    from peft import PeftConfig, PeftModel

    name = os.fspath(adapter)
    src = resolve(name, allow_pickle=allow_pickle, what="adapter")
    config = _load_or_explain("adapter", src, PeftConfig.from_pretrained, src.location)
    base = getattr(config, "base_model_name_or_path", None)
    lm.model = _load_or_explain("adapter", src, PeftModel.from_pretrained, lm.model, src.location,
                                is_trainable=trainable)
    if not trainable:
        lm.model.eval()
    rank = getattr(config, "r", None)
    targets = getattr(config, "target_modules", None)
    detail = f"{config.peft_type.value if hasattr(config.peft_type, 'value') else config.peft_type}"
    if rank is not None:
        detail += f" r={rank}"
    if targets:
        detail += f" on {', '.join(sorted(targets)) if not isinstance(targets, str) else targets}"
    lm.plan.reasons.append(f"adapter {src.describe()}: {detail} (trained on base {base!r})")
    lm.adapter = name
    return lm


def _pooling_from_sentence_transformers(directory: str) -> str | None:
    import json

    path = os.path.join(directory, "1_Pooling", "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    return None


def load_encoder(name_or_path, *, pooling: str | None = None, allow_pickle: bool = False,
                 device: str | None = None) -> LoadedEncoder:
    """Load a BERT-family encoder (BERT, MiniLM, RoBERTa, ...) and its tokenizer for sentence embeddings.

    ``pooling`` None takes the sentence-transformers pooling config when the directory has one, else mean
    pooling (the retriever of paper 001 §4.2 compares such vectors by cosine similarity).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be None, 'mean' or 'cls', not {pooling!r}")
    name = os.fspath(name_or_path)
    src = resolve(name, allow_pickle=allow_pickle, what="encoder")
    plan = plan_device(device=device)
    config = _load_or_explain("encoder", src, AutoConfig.from_pretrained, src.location, local_files_only=src.local)
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"encoder {name!r} is an encoder–decoder model ({type(config).__name__}); "
                         "a BERT-family encoder is needed for sentence embeddings")
    model = _load_or_explain("encoder", src, AutoModel.from_pretrained, src.location,
                             **_pretrained_kwargs(src), dtype=torch_dtype(plan))
    model = model.to(plan.device).eval()
    tokenizer = _load_or_explain("tokenizer of", src, AutoTokenizer.from_pretrained, src.location,
                                 local_files_only=src.local)
    reasons = [f"loaded encoder {type(model).__name__} from {src.describe()}"]
    if pooling is None:
        found = _pooling_from_sentence_transformers(src.location) if src.local else None
        pooling = found or "mean"
        reasons.append(f"{pooling} pooling ({'from its sentence-transformers config' if found else 'the default'})")
    else:
        reasons.append(f"{pooling} pooling (requested)")
    plan = DevicePlan(plan.device, plan.dtype, plan.load_in_4bit, plan.reasons + reasons)
    return LoadedEncoder(model=model, tokenizer=tokenizer, name=name, pooling=pooling, plan=plan)


def connect_lm(url: str, tokenizer_source, *, served_model: str | None = None, adapter: str | None = None,
               api_key: str | None = None, max_in_flight: int = 8, context: int | None = None) -> LoadedLM:
    """A :class:`LoadedLM` whose generation runs on an OpenAI-compatible server (vLLM, llama.cpp) at ``url``
    (:mod:`engine.backbones.server`). No weights load here: ``tokenizer_source`` (the served model's hub id or
    directory) gives the tokenizer and config, so prompts are rendered — chat template, window fitting —
    exactly as for the in-process model. ``adapter`` is a LoRA's *served name* (vLLM ``--lora-modules
    NAME=DIR``), applied per request; it must be one the server lists. ``context``: the served context length
    (default: what the server lists — vLLM does —, else the model config's); prompts are fitted to it."""
    from transformers import AutoConfig, AutoTokenizer

    from .server import OpenAIServerBackend, ServerSpec

    name = os.fspath(tokenizer_source)
    src = resolve(name, what="model", hint=_default_hint(name))
    config = _load_or_explain("model", src, AutoConfig.from_pretrained, src.location, local_files_only=src.local)
    kind = detect_kind(config)
    tokenizer = _load_or_explain("tokenizer of", src, AutoTokenizer.from_pretrained, src.location,
                                 local_files_only=src.local)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    backend = OpenAIServerBackend(ServerSpec.parse(url, model=served_model, api_key=api_key,
                                                   max_in_flight=max_in_flight, context=context))
    reasons = [f"generation on {backend.where}",
               f"prompts rendered here with the tokenizer and chat template of {src.describe()}"
               + (f", fitted to the served context of {backend.context} tokens" if backend.context else "")]
    if adapter:
        served = backend.models()
        if adapter not in served:
            raise ModelNotFoundError(
                f"generator server {backend.spec.url} does not serve an adapter named {adapter!r} (it serves: "
                f"{', '.join(served) or 'nothing'}); start it with --lora-modules {adapter}=ADAPTER_DIR")
        reasons.append(f"LoRA adapter {adapter!r} applied by the server on every request")
    plan = DevicePlan(device="server", dtype="", reasons=reasons)
    from urllib.parse import urlparse

    host = urlparse(backend.spec.url).netloc  # no slashes: UIs show a model name's last path segment
    return LoadedLM(model=None, tokenizer=tokenizer, kind=kind, name=f"{backend.model}@{host}",
                    plan=plan, adapter=adapter, backend=backend, config=config)
