"""Where live chats are kept.

* Every change is written to ``DATA_DIR/chats/<chat id>.json`` (the full chat, branches included,
  ``memlab-chat/2``, docs/chat-format.md) atomically: temp file, fsync, rename — a crash or kill never leaves half a file.
* When a study is open, a finished chat (the user starts another chat, opens one, or closes the app)
  is imported into the study database as a ``memlab-episode/1`` episode with ``source
  "live-chat"`` through ``annotation.importer.import_episodes`` (one transaction), so the Studies
  page can turn saved chats into a campaign. Study episodes are immutable, so a chat continued
  after it was imported is imported again under ``<id>-v2``, ``-v3``…
"""

from __future__ import annotations

from pathlib import Path

from engine.chat.document import ChatDocument


def chats_dir(data_dir) -> Path:
    return Path(data_dir) / "chats"


def save_chat(doc: ChatDocument, data_dir) -> Path:
    import datetime as dt

    doc.updated = dt.datetime.now().isoformat(timespec="seconds")
    path = chats_dir(data_dir) / f"{doc.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return doc.save(path)


def load_chat(path) -> ChatDocument:
    """A saved chat: ``memlab-chat/2`` or either kind of ``memlab-chat/1``."""
    return ChatDocument.load(path)


def list_chats(data_dir) -> list[tuple[Path, str, str]]:
    """Saved chats, newest first: (path, title, last saved)."""
    out = []
    for p in chats_dir(data_dir).glob("chat-*.json"):
        try:
            doc = load_chat(p)
        except (OSError, ValueError):
            continue
        out.append((p, doc.title(), doc.updated))
    return sorted(out, key=lambda r: r[2], reverse=True)


def import_into_study(study_path, doc: ChatDocument, *, include_cancelled: bool = False) -> str:
    """Import the chat as an episode into the study; returns the episode id used. Stopped (cancelled)
    replies are left out unless ``include_cancelled``."""
    from annotation.db import open_study
    from annotation.importer import import_episodes

    episode = doc.to_episode(include_cancelled=include_cancelled)
    study = open_study(study_path)
    try:
        base, n = episode.id, 1
        while study.one("SELECT 1 FROM episodes WHERE id = ?", (episode.id,)) is not None:
            n += 1
            episode.id = f"{base}-v{n}"
        import_episodes(study, [episode], file=f"live chat {base}", format="memlab")
    finally:
        study.close()
    return episode.id
