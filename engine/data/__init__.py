"""Torch-free dialogue data model and file formats (importable by ``annotation``)."""

from .errors import DataFormatError
from .model import LINK_KINDS, Episode, Link, Memory, MemoryUpdate, Session, Speaker, Turn
from .episode_format import FORMAT, episode_from_dict, episode_to_dict, read_episodes, write_episodes

__all__ = [
    "DataFormatError", "LINK_KINDS", "Episode", "Link", "Memory", "MemoryUpdate", "Session",
    "Speaker", "Turn", "FORMAT", "episode_from_dict", "episode_to_dict", "read_episodes",
    "write_episodes",
]
