"""The :class:`~engine.systems.session_agent.Responder` MiLP and its two baselines share (§3.2): the chat layout
of :mod:`.prompts` on the generator, streamed with the shared generation code.  The "memories" a turn gets
are the user's content (TpLP: past turns; MaLP: retrieved past turns; MiLP: none — it is in the weights)."""

from __future__ import annotations


from engine.systems import generation as gen

from . import prompts


class PersonalResponder(gen.LMResponder):
    def __init__(self, lm, settings=None, content_label: str = "What you know about them"):
        super().__init__(lm, settings)
        self.content_label = content_label

    def reply_prompt(self, main, partner, memories, session_index, history, bot_name=None) -> str:
        content = [text for text, _ in memories]

        def build(items):
            msgs = prompts.messages(main.name, partner.name, history, job=main.job, user_content=items or None,
                                    content_label=self.content_label)
            return gen.render_chat(self.lm, msgs)

        if not content:
            return build([])
        prompt, _ = gen.fit_to_window(self.lm, build, content, reserve=self.settings.max_new_tokens)
        return prompt
