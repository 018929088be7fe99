"""The network edge of a wheelhouse build: Orchard's wheel, uv's resolution, pip's downloads.

``orchard-fl`` is on no package index, so its wheel is built here (``pip wheel --no-deps`` of
a clean copy of the source tree, reproducible with ``SOURCE_DATE_EPOCH``). Dependencies are
*resolved for the target* with ``uv pip compile --python-platform aarch64-manylinux_2_36``:
``pip download --platform`` would evaluate markers such as ``platform_machine == "x86_64"``
for this laptop and fetch ``tensorflow-cpu`` instead of ``tensorflow``. uv has no armv7
target; there the resolution is ``--universal`` and each pin's marker is evaluated with the
target's environment. Each pin is then fetched with ``pip download --no-deps
--only-binary=:all: --platform ... --abi cp311``, which also knows each file's
Requires-Python (uv checks only its lower bound).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from provisioning.errors import WheelhouseError
from provisioning.wheelcheck import PROJECT, Target

logger = logging.getLogger(__name__)
_UV_PLATFORMS = {"aarch64": "aarch64-manylinux_2_36", "x86_64": "x86_64-manylinux_2_36"}
_SKIP_TOP = {
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "tests",
    "benchmarks",
    "docs",
    "scripts",
    "orchard-demo",
    "orchard-state",
    "runs",
    "out",
}
_EPOCH = "946684800"  # SOURCE_DATE_EPOCH: the same source gives the same wheel (and sha256)
_MAX_MISSING = 20


def requirement(extras: Iterable[str]) -> str:
    extras = tuple(extras)
    return f"{PROJECT}[{','.join(extras)}]" if extras else PROJECT


def project_root() -> Path:
    """The source tree this tool runs from (an editable install or a clone)."""
    root = Path(__file__).resolve().parents[1]
    try:
        name = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        name = None
    if name != PROJECT:
        raise WheelhouseError(
            f"wheelhouse: cannot find Orchard's source tree to build its wheel (looked in "
            f"{root}). Expected: a clone with pyproject.toml; pass --project DIR"
        )
    return root


def _run(argv: list[str], what: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOURCE_DATE_EPOCH": _EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    logger.info("running %s", " ".join(argv))
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WheelhouseError(f"wheelhouse: {what} failed: {exc}") from None


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.splitlines() if line.strip() and "is ignored" not in line]
    return " | ".join(kept[-lines:])


def build_project_wheel(project: Path, out: Path) -> Path:
    """``pip wheel --no-deps`` of a clean copy of the tree (no stale ``build/`` leaks in)."""
    project = Path(project).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orchard-src-") as tmp:
        src = Path(tmp) / "src"

        def ignore(folder: str, names: list[str]) -> set[str]:
            top = Path(folder) == project
            return {
                n
                for n in names
                if n == "__pycache__"
                or n.endswith((".egg-info", ".pyc", ".whl"))
                or (top and (n in _SKIP_TOP or n.startswith(".")))
            }

        shutil.copytree(project, src, ignore=ignore)
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
        done = _run(argv, "building the orchard-fl wheel")
    wheels = sorted(out.glob("orchard_fl-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise WheelhouseError(
            f"wheelhouse: building the orchard-fl wheel from {project} failed: {_tail(done.stderr)}"
        )
    return wheels[0]


def _uv() -> str:
    try:
        return str(importlib.import_module("uv").find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise WheelhouseError(
        "wheelhouse: resolving for the board needs uv. "
        "Expected: pip install 'orchard-fl[provision]'"
    )


def resolve(
    project_wheel: Path, target: Target, extras: Iterable[str], exclude: Iterable[str] = ()
) -> dict[str, str]:
    """Pins (``name==version``) for the target -> what needs them (uv's ``# via``)."""
    top = requirement(extras)
    with tempfile.TemporaryDirectory(prefix="orchard-resolve-") as tmp:
        req, constraints = Path(tmp) / "requirements.in", Path(tmp) / "constraints.txt"
        req.write_text(f"{top} @ {project_wheel.resolve().as_uri()}\n")
        constraints.write_text("".join(f"{spec}\n" for spec in exclude))
        argv = [
            _uv(),
            "pip",
            "compile",
            str(req),
            "--constraint",
            str(constraints),
            "--python-version",
            target.python,
            "--only-binary",
            ":all:",
            "--no-header",
            "--annotation-style",
            "line",
            "--no-emit-package",
            PROJECT,
            "--quiet",
        ]
        uv_platform = _UV_PLATFORMS.get(target.platform)
        argv += ["--python-platform", uv_platform] if uv_platform else ["--universal"]
        done = _run(argv, "resolving with uv")
    if done.returncode != 0:
        raise WheelhouseError(
            f"wheelhouse: cannot resolve {top} for {target}: {_tail(done.stderr, 12)}"
        )
    pins: dict[str, str] = {}
    for line in done.stdout.splitlines():
        spec, _, via = line.partition("#")
        if not spec.strip() or spec.startswith(("-", " ")):
            continue
        pin = Requirement(spec.strip())
        if target.wants(pin):
            pin.marker = None
            pins[str(pin)] = via.strip().removeprefix("via ").replace(PROJECT, top)
    return pins


def download(pins: dict[str, str], target: Target, dest: Path) -> list[str]:
    """Fetch each pin's wheel for the target into ``dest``.

    Returns the pins whose version does not support the target's Python (to resolve again
    without them); raises :class:`WheelhouseError` naming every pin that has no wheel at all.
    """
    platforms = [arg for tag in target.platform_tags() for arg in ("--platform", tag)]
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        *platforms,
        "--python-version",
        target.python,
        "--implementation",
        "cp",
        "--abi",
        target.abi,
    ]
    remaining, missing, wrong_python = list(pins), list[str](), list[str]()
    while remaining and len(missing) < _MAX_MISSING:
        done = _run([*argv, *remaining], "pip download")
        if done.returncode == 0:
            break
        found = re.search(r"No matching distribution found for (\S+)", done.stderr)
        offline = re.search(r"NewConnectionError|Max retries exceeded|Could not fetch", done.stderr)
        name = canonicalize_name(Requirement(found.group(1)).name) if found else None
        pin = next((p for p in remaining if canonicalize_name(Requirement(p).name) == name), None)
        if pin is None or offline:
            raise WheelhouseError(f"wheelhouse: pip download failed: {_tail(done.stderr)}")
        version = pin.partition("==")[2]
        if re.search(rf"(?<![\w.]){re.escape(version)} Requires-Python", done.stderr):
            wrong_python.append(pin)
        else:
            missing.append(pin)
        remaining.remove(pin)
    if missing:
        named = "; ".join(f"'{pin}' (needed by {pins[pin] or PROJECT})" for pin in missing)
        raise WheelhouseError(
            f"wheelhouse: no wheel for {target} on the package index for {named}. "
            f"Expected: a {target.abi}, abi3 or py3-none-any wheel for manylinux/linux "
            f"{target.platform}, which these releases do not publish"
        )
    return wrong_python
