"""Entry point of the annotator build: the whole app without the engine (no torch installed).

``MEMLAB_NO_ENGINE=1`` makes the Chat/Compare/Models pages say "engine not installed" instead of
trying to start a worker; the Annotate and Studies pages and every ``memlab study …`` command work.
"""

import os
import sys

os.environ.setdefault("MEMLAB_NO_ENGINE", "1")

from desktop.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
