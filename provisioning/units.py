"""The unit files shipped in the repository's ``systemd/`` directory.

Looked up in order: ``$ORCHARD_SYSTEMD_DIR``, the source tree (``<repo>/systemd``, for
editable installs), then ``<prefix>/share/orchard/systemd`` (where a wheel installs them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from provisioning import paths
from provisioning.errors import ProvisionError

BOARD_UNITS = (
    paths.AGENT_UNIT,
    paths.TRAINER_SOCKET,
    paths.TRAINER_UNIT,
    paths.UPDATE_PATH,
    paths.UPDATE_UNIT,
    paths.RECOVER_UNIT,
)


def unit_dir() -> Path:
    candidates = []
    if env := os.environ.get("ORCHARD_SYSTEMD_DIR"):
        candidates.append(Path(env))
    candidates.append(Path(__file__).resolve().parent.parent / "systemd")
    candidates.append(Path(sys.prefix) / "share" / "orchard" / "systemd")
    for candidate in candidates:
        if (candidate / paths.AGENT_UNIT).is_file():
            return candidate
    raise ProvisionError(
        "cannot find Orchard's systemd unit files; looked in "
        + ", ".join(str(c) for c in candidates)
        + " (set ORCHARD_SYSTEMD_DIR to the repository's systemd/ directory)"
    )


def read_unit(name: str) -> bytes:
    return (unit_dir() / name).read_bytes()
