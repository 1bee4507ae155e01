"""Backbone loading shared by every system (EMMA, MDR, MiLP, baselines)."""

from .types import DevicePlan, LoadedEncoder, LoadedLM, ModelNotFoundError

__all__ = ["DevicePlan", "LoadedEncoder", "LoadedLM", "ModelNotFoundError"]
