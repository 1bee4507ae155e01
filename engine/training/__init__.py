"""Training for MemLab's systems: shared LoRA plumbing, the shared training loop, EMMA's dialogue
module and retriever trainers, and loaders for the published EMMA checkpoint formats.

Torch is imported inside the modules, never here, so ``import engine.training`` stays cheap.
"""
