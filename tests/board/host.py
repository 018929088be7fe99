"""The laptop's side of the board in a box: the wheelhouse, ``orchard-provision image``, a model.

The wheelhouse holds aarch64 / CPython 3.11 wheels (Raspberry Pi OS Bookworm's Python) for
``orchard-fl[agent]`` (or ``[agent,train]``): the Orchard wheel built from this tree, plus its
dependencies from PyPI (cached under the board cache, keyed by the requirement list).
When this checkout's ``orchard-provision`` has a ``wheelhouse`` command, ``orchard-provision
image`` is run without ``--wheelhouse`` and builds (or reuses) its own cached one: the path a
user takes. Otherwise, or with ``ORCHARD_BOARD_WHEELHOUSE=manual``, it is built here with
``pip wheel`` + ``pip download --platform`` and passed with ``--wheelhouse``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLATFORMS = (
    "manylinux2014_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux_2_34_aarch64",
)
# The board's environment, for the markers in pyproject's extras (pip download evaluates them
# against the machine it runs on, which would pick x86_64's tensorflow-cpu).
BOARD_ENV = {
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


class HostError(RuntimeError):
    pass


def requirements(extras: tuple[str, ...]) -> list[str]:
    """Orchard's dependencies for ``extras`` on the board, markers resolved for aarch64."""
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    optional = project["optional-dependencies"]
    for extra in extras:
        wanted += optional[extra]
    out: list[str] = []
    for text in wanted:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(BOARD_ENV):
            continue
        if req.name == "orchard-fl":
            continue
        req.marker = None
        if str(req) not in out:
            out.append(str(req))
    return out


def _run(argv: list[str], log: Path, timeout: float) -> None:
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if done.returncode != 0:
        raise HostError(f"{' '.join(argv[:3])} failed ({done.returncode}); see {log}")


def wheelhouse(dest: Path, cache: Path, extras: tuple[str, ...] = ("agent",)) -> Path:
    """``dest`` filled with the board's wheels (this tree's Orchard wheel built fresh)."""
    dest.mkdir(parents=True, exist_ok=True)
    log = dest.parent / f"{dest.name}.log"
    reqs = requirements(extras)
    key = hashlib.sha256(json.dumps([reqs, PLATFORMS]).encode()).hexdigest()[:16]
    deps = cache / f"wheels-{key}"
    if not (deps / ".complete").exists():
        tmp = cache / f"wheels-{key}.part"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        _run(
            [
                str(BIN / "python"),
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                *platforms,
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--abi",
                "cp311",
                "--abi",
                "abi3",
                "--abi",
                "none",
                "-d",
                str(tmp),
                *reqs,
            ],
            log,
            timeout=1800,
        )
        (tmp / ".complete").write_text("\n".join(reqs) + "\n")
        shutil.rmtree(deps, ignore_errors=True)
        tmp.rename(deps)
    for wheel in deps.glob("*.whl"):
        if not (dest / wheel.name).exists():
            shutil.copy2(wheel, dest / wheel.name)
    for old in dest.glob("orchard_fl-*.whl"):
        old.unlink()
    _run(
        [
            str(BIN / "python"),
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(dest),
            str(REPO),
        ],
        log,
        timeout=600,
    )
    if not any(dest.glob("orchard_fl-*.whl")):
        raise HostError(f"no orchard_fl wheel in {dest}; see {log}")
    return dest


def tool_builds_wheelhouse() -> bool:
    """``orchard-provision wheelhouse`` exists (and ``image`` builds one when not given one)."""
    if os.environ.get("ORCHARD_BOARD_WHEELHOUSE") == "manual":
        return False
    done = subprocess.run(
        [str(BIN / "orchard-provision"), "wheelhouse", "--help"], capture_output=True, timeout=120
    )
    return done.returncode == 0


def provision(
    base: Path,
    out: Path,
    *,
    device_id: str,
    wheelhouse: Path | None,
    config: Path,
    package: str,
    log: Path,
    extra: tuple[str, ...] = (),
) -> float:
    """``orchard-provision image`` (the command a user runs); returns its wall time."""
    argv = [
        str(BIN / "orchard-provision"),
        "image",
        "--image",
        str(base),
        "--out",
        str(out),
        "--device-id",
        device_id,
        "--package",
        package,
        "--config",
        str(config),
        *(("--wheelhouse", str(wheelhouse)) if wheelhouse else ()),
        *extra,
    ]
    started = time.monotonic()
    _run(argv, log, timeout=1800)
    return time.monotonic() - started


def export_bundle(root: Path, version: str = "1") -> Path:
    """A float32 room classifier (mlp over the synthetic sensor's five features)."""
    from tests.agent.serve.bundles import export

    return export(root, "mlp", "classify", "float32", version)
