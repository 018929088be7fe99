"""Small real wheel files for the wheelhouse tests (tests/provisioning/test_wheelhouse*.py).

The wheels are real zip files with a ``*.dist-info/METADATA``, ``WHEEL`` and ``RECORD``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ARM = "cp311-cp311-manylinux_2_17_aarch64"
X86 = "cp311-cp311-manylinux_2_17_x86_64"
ORCHARD_REQUIRES = (
    "numpy>=1.26",
    'flwr[dp]>=1.41; extra == "agent"',
    'tensorflow-cpu>=2.16; platform_machine == "x86_64" and extra == "train"',
    'tensorflow>=2.16; platform_machine != "x86_64" and extra == "train"',
)


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    tag: str = "py3-none-any",
    requires: Iterable[str] = (),
    extras: Iterable[str] = (),
    requires_python: str | None = None,
    files: Mapping[str, str] | None = None,
) -> Path:
    """A minimal real wheel: METADATA (Requires-Dist, Provides-Extra), WHEEL and RECORD, plus
    ``files`` (archive name -> text: modules, ``entry_points.txt``)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{name.replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Python: {requires_python}"] if requires_python else []
    meta += [f"Provides-Extra: {e}" for e in extras] + [f"Requires-Dist: {r}" for r in requires]
    members = {
        f"{name.replace('-', '_')}/__init__.py": "",
        **(files or {}),
        f"{info}/METADATA": "\n".join(meta) + "\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        f"Tag: {tag}\n",
    }
    path = directory / f"{stem}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in members.items():
            zf.writestr(member, text)
        zf.writestr(f"{info}/RECORD", "".join(f"{m},,\n" for m in members) + f"{info}/RECORD,,\n")
    return path


def complete(directory: Path, version: str = "0.1.0") -> Path:
    """orchard-fl[agent,train] for cp311 aarch64, with abi3, none-any and marker cases."""
    make_wheel(
        directory, "orchard-fl", version, requires=ORCHARD_REQUIRES, extras=("agent", "train")
    )
    make_wheel(directory, "numpy", "2.4.6", ARM, requires_python=">=3.11")
    make_wheel(
        directory,
        "flwr",
        "1.42.0",
        extras=("dp",),
        requires=("grpcio>=1.60", 'dp-accounting; extra == "dp"'),
    )
    make_wheel(directory, "grpcio", "1.68.0", "cp311-cp311-manylinux2014_aarch64")
    make_wheel(directory, "dp-accounting", "0.4.4")
    make_wheel(
        directory,
        "tensorflow",
        "2.21.0",
        "cp311-cp311-manylinux_2_27_aarch64",
        requires=("protobuf>=4",),
    )
    make_wheel(directory, "protobuf", "6.30.0", "cp39-abi3-manylinux2014_aarch64")
    return directory


def names(checked: Any) -> set[str]:
    return {w.name for w in checked.used}


def bad_wheelhouse(directory: Path) -> Path:
    wh = complete(directory)
    next(wh.glob("grpcio-*.whl")).unlink()
    make_wheel(wh, "grpcio", "1.68.0", X86)
    return wh
