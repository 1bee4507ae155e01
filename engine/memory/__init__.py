"""Egocentric memory (EMMA paper §3.3): torch-free store with a link graph and cached vectors."""

from .store import STATE_FORMAT, MemoryError_, MemoryStore

__all__ = ["MemoryStore", "MemoryError_", "STATE_FORMAT"]
