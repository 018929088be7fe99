"""The Flower app (FAB) that ``flwr run`` submits, assembled per run from one source.

``coordinator/fab/`` holds the thin entry modules and a ``pyproject.toml`` without run config;
:func:`build` copies them into the run's work directory and declares every run-config key
with its default from :class:`RunSettings` (``[tool.flwr.app.config]``: Flower refuses keys a
FAB does not declare), so the defaults live in one place.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import tomli_w

from coordinator.federation.runconfig import RunSettings

SOURCE = Path(__file__).resolve().parent.parent / "fab"


def build(workdir: Path) -> Path:
    """``workdir/fab``: the entry modules and a pyproject declaring every run setting."""
    app = workdir / "fab"
    if app.exists():
        shutil.rmtree(app)
    shutil.copytree(SOURCE, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    project = tomllib.loads((SOURCE / "pyproject.toml").read_text(encoding="utf-8"))
    project["tool"]["flwr"]["app"]["config"] = RunSettings().to_run_config()
    (app / "pyproject.toml").write_text(tomli_w.dumps(project), encoding="utf-8")
    return app
