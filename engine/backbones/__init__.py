"""Backbone loading shared by every system (EMMA, MDR, MiLP, baselines).

Importing this package does not import torch; ``load_lm``/``load_encoder``/``encode`` import it when called.
"""

from .types import DevicePlan, LoadedEncoder, LoadedLM, ModelNotFoundError


def __getattr__(name):  # lazy, so `import engine.backbones` stays torch-free
    if name in ("load_lm", "load_encoder", "attach_adapter"):
        from . import loading

        return getattr(loading, name)
    if name == "encode":
        from .encoding import encode

        return encode
    if name == "plan_device":
        from .device import plan_device

        return plan_device
    if name in ("default_lm_path", "default_encoder_path", "prepare_default_models"):
        from . import embedded

        return getattr(embedded, name)
    if name == "PickleWeightsRefused":
        from .sources import PickleWeightsRefused

        return PickleWeightsRefused
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DevicePlan", "LoadedEncoder", "LoadedLM", "ModelNotFoundError", "PickleWeightsRefused",
    "load_lm", "load_encoder", "attach_adapter", "encode", "plan_device",
    "default_lm_path", "default_encoder_path", "prepare_default_models",
]
