"""The parrot: a session-log agent whose responder repeats the partner's last words (no model at all), so the
registry tests can run a whole chat through the real CLI and worker code without loading anything."""

from __future__ import annotations

from engine.systems.session_agent import SessionLogAgent


class ParrotResponder:
    def __init__(self, prefix: str):
        self.prefix = prefix

    def reply_prompt(self, main, partner, memories, session_index, history, bot_name=None) -> str:
        return history[-1][1] if history else ""

    def stream_reply(self, prompt, cancel=None):
        for word in f"{self.prefix} {prompt}".split():
            yield word + " "

    def sample_replies(self, prompt, n, cancel=None):
        return [f"{self.prefix} {prompt}"] * n

    def describe(self) -> dict:
        return {"lm": "none (parrot)"}


class ParrotAgent(SessionLogAgent):
    name = "parrot"

    def __init__(self, prefix: str):
        super().__init__(ParrotResponder(prefix))
