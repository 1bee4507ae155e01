"""MDR: Memory Distillation and Reproduction (paper 000) — config, model, agent, training stages, checkpoints,
registry record."""
