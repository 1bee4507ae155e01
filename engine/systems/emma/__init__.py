"""EMMA (paper 001): egocentric-memory dialogue agent — formats, dialogue module, retriever, agent.

``formats`` is pure Python; the other modules load torch only when a model runs.
"""
