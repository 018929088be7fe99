"""Wheelhouses: ``verify`` on small real wheel files (tests/provisioning/wheels.py), the cache.

Only the two ``slow`` tests reach the package index (a small aarch64 wheelhouse; an armv7l
refusal). The CLI refusing early: test_wheelhouse_cli.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

from provisioning import wheelfetch, wheelhouse
from provisioning.errors import InvalidOption, WheelhouseError
from provisioning.wheelcheck import MANIFEST, Target, verify
from tests.provisioning.wheels import ARM, ORCHARD_REQUIRES, X86, complete, make_wheel, names


def test_a_complete_wheelhouse_passes(tmp_path: Path) -> None:
    checked = verify(complete(tmp_path / "wh"))
    assert names(checked) == {
        "orchard-fl",
        "numpy",
        "flwr",
        "grpcio",
        "dp-accounting",
        "tensorflow",
        "protobuf",
    }
    assert checked.unused == () and str(checked.target) == "cp311 manylinux aarch64"
    assert checked.size() > 0


def test_a_missing_dependency_is_named(tmp_path: Path) -> None:
    wh = complete(tmp_path / "wh")
    next(wh.glob("grpcio-*.whl")).unlink()
    with pytest.raises(WheelhouseError) as info:
        verify(wh)
    assert str(info.value) == (
        "wheelhouse: no wheel for 'grpcio>=1.60' (needed by flwr[dp]) for cp311 manylinux "
        f"aarch64. Received: no grpcio wheel in {wh}"
    )


def test_an_x86_wheel_is_refused_naming_the_package(tmp_path: Path) -> None:
    wh = complete(tmp_path / "wh")
    next(wh.glob("grpcio-*.whl")).unlink()
    make_wheel(wh, "grpcio", "1.68.0", X86)
    with pytest.raises(WheelhouseError, match=r"no wheel for 'grpcio>=1.60' \(needed by flwr") as e:
        verify(wh)
    assert f"Received: grpcio-1.68.0-{X86}.whl (another platform or Python)" in str(e.value)
    # A stray wheel for another machine is refused too, even when nothing needs it.
    shutil.rmtree(wh)
    make_wheel(complete(wh), "psutil", "7.0.0", "cp36-abi3-manylinux_2_12_x86_64")
    with pytest.raises(
        WheelhouseError,
        match=r"psutil-7.0.0-cp36-abi3-manylinux_2_12_x86_64.whl "
        r"does not install on cp311 manylinux aarch64",
    ):
        verify(wh)


def test_markers_are_evaluated_for_the_target_not_this_machine(tmp_path: Path) -> None:
    """tensorflow-cpu (x86_64 only) is not needed for aarch64, whatever machine runs the check."""
    wh = tmp_path / "wh"
    make_wheel(wh, "orchard-fl", "0.1.0", requires=ORCHARD_REQUIRES[2:], extras=("train",))
    make_wheel(wh, "tensorflow", "2.21.0")
    assert names(verify(wh, platform="aarch64", extras=("train",))) == {"orchard-fl", "tensorflow"}
    with pytest.raises(WheelhouseError) as info:
        verify(wh, platform="x86_64", extras=("train",))
    assert str(info.value).startswith(
        "wheelhouse: no wheel for 'tensorflow-cpu>=2.16' (needed by orchard-fl[train]) for "
        "cp311 manylinux x86_64. Received: no tensorflow-cpu wheel in"
    )


def test_extras_decide_what_is_needed(tmp_path: Path) -> None:
    wh = complete(tmp_path / "wh")
    for pattern in ("flwr-*", "grpcio-*", "dp_accounting-*"):
        next(wh.glob(pattern)).unlink()
    assert names(verify(wh, extras=("train",))) == {"orchard-fl", "numpy", "tensorflow", "protobuf"}
    with pytest.raises(
        WheelhouseError, match=r"'flwr\[dp\]>=1.41' \(needed by orchard-fl\[agent\]"
    ):
        verify(wh, extras=("agent",))
    with pytest.raises(WheelhouseError, match=r"has no extra 'gpu'. Expected one of \['agent'"):
        verify(wh, extras=("gpu",))


def test_python_version_and_orchard_itself(tmp_path: Path) -> None:
    wh = complete(tmp_path / "wh")
    next(wh.glob("numpy-*.whl")).unlink()
    make_wheel(wh, "numpy", "2.5.0", "cp311-cp311-manylinux_2_28_aarch64", requires_python=">=3.12")
    with pytest.raises(WheelhouseError, match=r"numpy-2.5.0-.*\(Requires-Python >=3.12\)"):
        verify(wh)
    with pytest.raises(
        WheelhouseError, match=r"no wheel for 'orchard-fl\[agent,train\]' \(Orchard"
    ):
        verify(make_wheel(tmp_path / "other", "numpy", "2.4.6", ARM).parent)
    with pytest.raises(InvalidOption, match=r"platform: expected one of \['aarch64'"):
        Target("3.11", "riscv64")


def test_the_manifest_must_match_target_and_files(tmp_path: Path) -> None:
    wh = complete(tmp_path / "wh")
    wheels = {p.name: wheelhouse.sha256(p) for p in wh.glob("*.whl")}
    manifest = {
        "target": {"python": "3.11", "platform": "aarch64"},
        "extras": ["agent", "train"],
        "requirement": "orchard-fl[agent,train]==0.1.0",
        "wheels": wheels,
    }
    (wh / MANIFEST).write_text(json.dumps(manifest))
    verify(wh)
    with pytest.raises(
        WheelhouseError,
        match=r"built for Python 3.11 aarch64 \(wheelhouse.json\). "
        r"Expected: Python 3.13 aarch64",
    ):
        verify(wh, python="3.13")
    with pytest.raises(WheelhouseError, match=r"built for orchard-fl\[agent,train\]==0.1.0"):
        verify(wh, extras=("agent", "coordinator"))
    tampered = next(wh.glob("grpcio-*.whl"))
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    with pytest.raises(WheelhouseError, match=r"grpcio-1.68.0-.* changed since the wheelhouse"):
        verify(wh)


class FakeIndex:
    """Stands in for uv and pip: 'resolves' to the wheels of a local directory and copies them."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.resolves = 0

    def resolve(
        self, own: Path, target: Target, extras: Iterable[str], exclude: Iterable[str] = ()
    ) -> dict[str, str]:
        self.resolves += 1
        pins = {}
        for path in self.source.glob("*.whl"):
            name, version = path.name.split("-")[:2]
            if name != "orchard_fl":
                pins[f"{name.replace('_', '-')}=={version}"] = "orchard-fl"
        return pins

    def download(self, pins: dict[str, str], target: Target, dest: Path) -> list[str]:
        for path in self.source.glob("*.whl"):
            if not path.name.startswith("orchard_fl"):
                shutil.copy2(path, dest)
        return []


@pytest.fixture
def fake_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    index = FakeIndex(complete(tmp_path / "index"))

    def build_project_wheel(root: Path, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(next(root.glob("orchard_fl-*.whl")), out))

    monkeypatch.setattr(wheelfetch, "resolve", index.resolve)
    monkeypatch.setattr(wheelfetch, "download", index.download)
    monkeypatch.setattr(wheelfetch, "build_project_wheel", build_project_wheel)
    return index


def test_build_and_the_cache(tmp_path: Path, fake_index: FakeIndex) -> None:
    project = tmp_path / "project"
    make_wheel(project, "orchard-fl", "0.1.0", requires=ORCHARD_REQUIRES, extras=("agent", "train"))
    cache = tmp_path / "cache"
    first = wheelhouse.ensure(cache=cache, project=project)
    assert first == cache / "3.11-aarch64-agent+train" and fake_index.resolves == 1
    manifest = json.loads((first / MANIFEST).read_text())
    assert manifest["target"]["platform"] == "aarch64"
    assert manifest["requirement"] == "orchard-fl[agent,train]==0.1.0"
    assert set(manifest["wheels"]) == {p.name for p in first.glob("*.whl")}
    assert wheelhouse.ensure(cache=cache, project=project) == first and fake_index.resolves == 1
    # Only Orchard's code changed (same Requires-Dist): its wheel is swapped, nothing resolved.
    shutil.rmtree(project)
    make_wheel(project, "orchard-fl", "0.1.1", requires=ORCHARD_REQUIRES, extras=("agent", "train"))
    wheelhouse.ensure(cache=cache, project=project)
    assert fake_index.resolves == 1
    assert sorted(p.name for p in first.glob("orchard_fl-*")) == [
        "orchard_fl-0.1.1-py3-none-any.whl"
    ]
    # A new dependency: built again.
    shutil.rmtree(project)
    make_wheel(
        project,
        "orchard-fl",
        "0.1.2",
        requires=(*ORCHARD_REQUIRES, "protobuf"),
        extras=("agent", "train"),
    )
    wheelhouse.ensure(cache=cache, project=project)
    assert fake_index.resolves == 2 and verify(first).project.version.public == "0.1.2"
    other = tmp_path / "other"
    (other / "notes.txt").parent.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(WheelhouseError, match="holds other files"):
        wheelhouse.build(other, project=project)


def test_a_release_without_the_targets_python_is_resolved_again(
    tmp_path: Path, fake_index: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    download = fake_index.download

    def resolve(
        own: Path, target: Target, extras: Iterable[str], exclude: Iterable[str] = ()
    ) -> dict[str, str]:
        calls.append(list(exclude))
        return fake_index.resolve(own, target, extras)

    def first_lacks_python(pins: dict[str, str], target: Target, dest: Path) -> list[str]:
        download(pins, target, dest)
        return ["backports-strenum==1.3.1"] if len(calls) == 1 else []

    monkeypatch.setattr(wheelfetch, "resolve", resolve)
    monkeypatch.setattr(wheelfetch, "download", first_lacks_python)
    project = make_wheel(
        tmp_path / "p", "orchard-fl", "0.1.0", requires=ORCHARD_REQUIRES, extras=("agent", "train")
    ).parent
    wheelhouse.build(tmp_path / "out", project=project)
    assert calls == [[], ["backports-strenum!=1.3.1"]]


@pytest.mark.slow
def test_a_real_wheelhouse_for_aarch64(tmp_path: Path) -> None:
    """Orchard's own wheel and its base dependencies (numpy, typer, ...) from the index."""
    manifest = wheelhouse.build(tmp_path / "wh", "3.11", "aarch64", extras=())
    checked = verify(tmp_path / "wh", "3.11", "aarch64", extras=())
    assert checked.project.name == "orchard-fl" and "numpy" in names(checked)
    numpy = next(w for w in checked.used if w.name == "numpy")
    assert any(t.platform.endswith("_aarch64") for t in numpy.tags)
    assert manifest["requirement"].startswith("orchard-fl==")
    assert set(manifest["wheels"]) == {p.name for p in (tmp_path / "wh").glob("*.whl")}


@pytest.mark.slow
def test_armv7_is_refused_naming_the_package(tmp_path: Path) -> None:
    """LiteRT publishes no 32-bit ARM wheel: the build names it and builds nothing."""
    project = tmp_path / "project"
    (project / "orchard_mini").mkdir(parents=True)
    (project / "orchard_mini" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "orchard-fl"\nversion = "0.0.1"\n'
        'dependencies = ["ai-edge-litert>=1.2"]\n'
    )
    with pytest.raises(WheelhouseError) as info:
        wheelhouse.build(tmp_path / "wh", "3.11", "armv7l", extras=(), project=project)
    message = str(info.value)
    assert "no wheel for cp311 manylinux armv7l on the package index" in message
    assert "'ai-edge-litert==" in message and "(needed by orchard-fl)" in message
    assert not (tmp_path / "wh").exists()
