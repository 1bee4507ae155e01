"""Suite-wide settings: never touch the hub, keep Qt offscreen, isolate the user data dir."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """The embedded SmolLM2 directory: the user's prepared one, else prepared once into a temporary
    MEMLAB_HOME (about 35 s), so the slow end-to-end tests run on a fresh CI machine too."""
    from engine.backbones import embedded

    ok, _ = embedded.check_prepared()
    if ok:
        return embedded.default_lm_path()
    home = tmp_path_factory.mktemp("memlab-home")
    old = os.environ.get("MEMLAB_HOME")
    os.environ["MEMLAB_HOME"] = str(home)
    try:
        embedded.prepare_default_models(progress=lambda *a: None)
        return embedded.default_lm_path()
    finally:
        if old is None:
            os.environ.pop("MEMLAB_HOME", None)
        else:
            os.environ["MEMLAB_HOME"] = old
