"""Comparison baselines on EMMA's dialogue module (docs/architecture.md, "Baselines"): no memory, full history,
session summaries (the paper's ablation, Appendix I) and RAG over raw past turns."""

from .agents import FullHistoryAgent, NoMemoryAgent, RagAgent, SummaryAgent

__all__ = ["NoMemoryAgent", "FullHistoryAgent", "SummaryAgent", "RagAgent"]
