"""Where the Swift lab (lab/swift/up.sh) writes its env file, by the same rules as up.sh:
``$HAVEN_SWIFT_ENV_FILE``, else ``$HAVEN_SWIFT_STATE/env``, else
``$HAVEN_LAB_STATE/swift/env`` (scripts/dev.sh sets HAVEN_LAB_STATE), else
``lab/.state/swift/swift.env`` in this checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENV_FILE = REPO_ROOT / "lab" / ".state" / "swift" / "swift.env"


def swift_lab_env_file() -> Path:
    own, lab_state = os.environ.get("HAVEN_SWIFT_STATE"), os.environ.get("HAVEN_LAB_STATE")
    default = (
        Path(own) / "env"
        if own
        else Path(lab_state) / "swift" / "env"
        if lab_state
        else DEFAULT_ENV_FILE
    )
    return Path(os.environ.get("HAVEN_SWIFT_ENV_FILE", default))
