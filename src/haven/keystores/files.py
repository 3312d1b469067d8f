"""Private files of the key stores."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def private_dir(directory: Path) -> None:
    """Make ``directory``, each missing level 0700 whatever the umask (existing levels are
    left as they are: $HAVEN_HOME may be a place the operator chose)."""
    missing = []
    probe = directory
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
        os.chmod(d, 0o700)
