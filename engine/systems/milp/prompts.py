"""The one prompt layout shared by MiLP and its two baselines (torch-free), so that they differ only in
where the user's content lives (MiLP §3.2):

* MiLP — in the weights (no user content in the prompt);
* TpLP — the user's historical content as a text prompt (as much as fits the window, newest kept);
* MaLP-style — the user's past turns retrieved by similarity to the query (Zhang et al. 2023).

Every system sees the same current-session context: the last ``CONTEXT_TURNS`` turns.
"""

from __future__ import annotations

CONTEXT_TURNS = 2


def system_text(main: str, partner: str, job: str = "") -> str:
    who = f"{main}" + (f", a {job}," if job else "")
    return (f"You are {who} talking with {partner}. Reply to {partner}'s last message in one or two "
            "sentences, helpfully and specifically.")


def messages(main: str, partner: str, context: list[tuple[str, str]], *, job: str = "",
             user_content: list[str] | None = None, content_label: str = "What you know about them") -> list[dict]:
    """Chat messages for the reply to ``context`` (list of (speaker, text), oldest first): the main speaker's
    turns are ``assistant`` messages, the partner's ``user`` messages; ``user_content`` (TpLP / MaLP) goes
    into the system message."""
    system = system_text(main, partner, job)
    if user_content:
        system += f"\n{content_label} ({partner}):\n" + "\n".join(f"- {c}" for c in user_content)
    out = [{"role": "system", "content": system}]
    for speaker, text in context[-CONTEXT_TURNS:]:
        role = "assistant" if speaker == main else "user"
        if out[-1]["role"] == role and role != "system":
            out[-1] = {"role": role, "content": out[-1]["content"] + "\n" + text}
        else:
            out.append({"role": role, "content": text})
    if out[-1]["role"] != "user":
        out.append({"role": "user", "content": "(continues)"})
    return out


def transcript(turns: list[tuple[str, str]]) -> str:
    """The user's historical content as one fixed text phrase (§3.1: "format each user's historical content
    into a fixed text phrase which allows us to perform next user content prediction")."""
    return "\n".join(f"{speaker}: {text}" for speaker, text in turns)
