"""Device policy for every backbone (docs/architecture.md, "Models, offline first"): CUDA bf16 when available,
4-bit NF4 (bitsandbytes, as in QLoRA for EMMA's training, paper 001 §5) when asked and CUDA is present,
otherwise CPU float32. Every decision and every fallback is written to ``DevicePlan.reasons`` as a sentence
the app shows to the user — nothing falls back silently.
"""

from __future__ import annotations

import importlib.util

from .types import DevicePlan


def _why_no_cuda(torch) -> str:
    if getattr(torch.version, "cuda", None) is None:
        return f"torch {torch.__version__} is a CPU-only build (no CUDA support compiled in)"
    return (
        f"torch {torch.__version__} has CUDA {torch.version.cuda} support but no GPU is visible "
        "(check the driver and CUDA_VISIBLE_DEVICES)"
    )


def _bitsandbytes_problem() -> str | None:
    """None when bitsandbytes can be used for 4-bit loading, else why not."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (pip install bitsandbytes)"
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # a broken native library shows up here
        return f"bitsandbytes failed to import ({type(e).__name__}: {e})"
    return None


def plan_device(*, quantize_4bit: bool = False, device: str | None = None) -> DevicePlan:
    """Decide where and how a model is loaded.

    ``device``: None or "auto" (the policy above), "cpu", "cuda" or "cuda:N" (a request; a CUDA request
    without a visible GPU falls back to CPU with a reason). ``quantize_4bit``: ask for bitsandbytes NF4.
    """
    import torch

    requested = (device or "auto").strip().lower()
    reasons: list[str] = []
    cuda_ok = torch.cuda.is_available()

    if requested == "cpu":
        reasons.append("device 'cpu' requested by the caller: float32")
        target = "cpu"
    elif requested == "auto" or requested.startswith("cuda"):
        if cuda_ok:
            target = requested if requested.startswith("cuda") else "cuda"
            index = torch.device(target).index or 0
            reasons.append(f"CUDA is available ({torch.cuda.get_device_name(index)}): using {target}")
        else:
            target = "cpu"
            lead = f"device '{requested}' requested but" if requested != "auto" else "no CUDA device:"
            reasons.append(f"{lead} {_why_no_cuda(torch)}; using CPU float32")
    else:
        raise ValueError(f"device must be None, 'auto', 'cpu' or 'cuda[:N]', not {device!r}")

    if target == "cpu":
        if quantize_4bit:
            reasons.append("4-bit NF4 was requested but needs CUDA (bitsandbytes): loading full-precision float32")
        return DevicePlan(device="cpu", dtype="float32", load_in_4bit=False, reasons=reasons)

    index = torch.device(target).index or 0
    if torch.cuda.is_bf16_supported():
        dtype = "bfloat16"
        reasons.append("the GPU supports bfloat16: using bf16")
    else:
        dtype = "float16"
        name = torch.cuda.get_device_name(index)
        reasons.append(f"{name} does not support bfloat16: using float16")

    load_in_4bit = False
    if quantize_4bit:
        problem = _bitsandbytes_problem()
        if problem:
            reasons.append(f"4-bit NF4 was requested but {problem}: loading {dtype} instead")
        else:
            load_in_4bit = True
            reasons.append(f"4-bit NF4 requested: bitsandbytes NF4 weights, double quantisation, {dtype} compute")
    return DevicePlan(device=target, dtype=dtype, load_in_4bit=load_in_4bit, reasons=reasons)


def torch_dtype(plan: DevicePlan):
    """The ``torch.dtype`` named by ``plan.dtype``."""
    import torch

    return getattr(torch, plan.dtype)


def bnb_config(plan: DevicePlan):
    """The transformers ``BitsAndBytesConfig`` for a 4-bit plan (NF4, double quant, compute in plan dtype)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(plan),
    )
