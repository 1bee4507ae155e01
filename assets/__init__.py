"""Data files shipped with MemLab: starter-corpus templates, icons, default config."""
