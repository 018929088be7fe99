"""The header line the benchmarks print: CPU, cores, memory, Python and package versions.

Imported as ``benchmarks.machine`` with the repository root on ``sys.path`` (each script drops
its own folder from ``sys.path``, where ``agent.py`` would shadow the ``agent`` package).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
from pathlib import Path

import psutil


def version(*names: str) -> str:
    """The installed version of the first distribution found among ``names``."""
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
    return "absent"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def describe(*packages: str | tuple[str, ...], extra: str = "") -> str:
    """``machine: CPU, N cores, M GiB, arch; python X, pkg V, ...`` (+ ``extra``).

    A tuple names alternatives for one package (``("tensorflow", "tensorflow-cpu")``), shown
    under its first name.
    """
    mem = psutil.virtual_memory().total / 2**30
    parts = [f"python {platform.python_version()}"]
    for package in packages:
        names = (package,) if isinstance(package, str) else package
        parts.append(f"{names[0]} {version(*names)}")
    if extra:
        parts.append(extra)
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.machine()}; "
        + ", ".join(parts)
    )
