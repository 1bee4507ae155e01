"""A real temporary study for the Annotate/Studies GUI tests: starter-corpus episodes imported
through ``annotation.importer`` and campaigns made with ``annotation.campaigns``."""

from __future__ import annotations

from pathlib import Path


ACCOUNTS = ("Ada", "Bo", "Ben", "Bea")


def make_study(root: Path, *, episodes: int = 2, seed: int = 3, campaigns=(("memory-check", "memory"),),
               accounts=ACCOUNTS) -> Path:
    """The study, with the annotator ``accounts`` the owner created (the Annotate page lists them)."""
    from annotation.accounts import create_account
    from annotation.campaigns import create_campaign
    from annotation.db import init_study
    from annotation.importer import import_episodes
    from engine.data.corpus.generator import generate_episodes

    path = root / "study.db"
    with init_study(path) as study:
        import_episodes(study, generate_episodes(episodes, seed=seed), file="starter corpus")
        for name, preset in campaigns:
            create_campaign(study, name, preset, groups=3)
        for name in accounts:
            create_account(study, name)
    return path


def make_ctx(root: Path, study: Path | None = None):
    from desktop.context import AppContext

    ctx = AppContext(settings_path=root / "settings.ini", data_dir=root / "data")
    if study is not None:
        ctx.set_study(study)
    return ctx
