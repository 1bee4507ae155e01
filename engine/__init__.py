"""MemLab engine: models, agents, memory, training, metrics.

Only ``engine.data`` and ``engine.memory`` are torch-free; everything that touches a model
imports torch lazily inside the model code (docs/architecture.md, "Packages and import rules").
"""
