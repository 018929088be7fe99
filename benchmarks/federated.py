"""Federated benchmarks on loopback (target figures in docs/federated.md): the entry point.

The parts (accuracy, overhead, bytes, inference, simulation), their fleets and the runner live
in ``benchmarks/fedbench/``; ``--help`` (``benchmarks/fedbench/runner.py``) lists the options.

    .venv/bin/python benchmarks/federated.py [--parts accuracy,overhead,...] [--rounds 20]
        [--devices 5] [--overhead-devices 10] [--quick] [--json out.json] [--workdir /tmp/x]

``benchmarks/privacy.py`` loads this file as a module and reuses the names it re-exports.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))  # benchmarks.fedbench, benchmarks.machine
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.fedbench.common import machine, prepare, say, table  # noqa: E402
from benchmarks.fedbench.fleet import OrchardFleet  # noqa: E402
from benchmarks.fedbench.runner import PARTS, main, parse, workdir  # noqa: E402
from benchmarks.machine import version  # noqa: E402

__all__ = [
    "PARTS",
    "OrchardFleet",
    "machine",
    "main",
    "parse",
    "prepare",
    "say",
    "table",
    "version",
    "workdir",
]

if __name__ == "__main__":
    sys.exit(main())
