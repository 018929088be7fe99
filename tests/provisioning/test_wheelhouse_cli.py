"""``orchard-provision wheelhouse`` and the wheelhouse options of image, rootfs and ssh.

A bad wheelhouse is refused, naming the package, before the image, root, board or CA is
touched; a wheelhouse is built by default and ``--from-index`` only when asked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provisioning import wheelhouse
from provisioning.cli import app
from tests.provisioning.wheels import ARM, X86, bad_wheelhouse, complete

runner = CliRunner()


def test_cli_wheelhouse_check(tmp_path: Path) -> None:
    wh = complete(tmp_path / "wh")
    ok = runner.invoke(app, ["wheelhouse", "--out", str(wh), "--check"])
    assert ok.exit_code == 0, ok.output
    assert "7 wheels" in ok.output and "--no-index --find-links" in ok.output
    bad = runner.invoke(app, ["wheelhouse", "--out", str(wh), "--check", "--platform", "x86_64"])
    assert bad.exit_code == 1 and "no wheel for 'numpy>=1.26'" in bad.output
    assert f"Received: numpy-2.4.6-{ARM}.whl (another platform or Python)" in bad.output
    odd = runner.invoke(app, ["wheelhouse", "--out", str(wh), "--extras", "agent;rm"])
    assert odd.exit_code == 1 and "extras: expected comma-separated names" in odd.output


def test_cli_refuses_a_bad_wheelhouse_before_touching_anything(tmp_path: Path) -> None:
    """image, rootfs and ssh name the package before the image, root, board or CA is touched."""
    wh = bad_wheelhouse(tmp_path / "wh")
    image = tmp_path / "raspios.img"
    image.write_bytes(b"not really an image, and never read" * 100)
    os.utime(image, (1_000_000_000, 1_000_000_000))
    before = (image.read_bytes(), image.stat().st_mtime_ns)
    ca = tmp_path / "ca"
    assert runner.invoke(app, ["ca", "init", "--dir", str(ca)]).exit_code == 0
    ca_files = sorted(p.relative_to(ca) for p in ca.rglob("*"))
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    common = [
        "--device-id",
        "kitchen-pi",
        "--ca",
        str(ca),
        "--coordinator",
        "coord.local",
        "--wheelhouse",
        str(wh),
    ]
    for args in (
        ["image", "--image", str(image), "--out", str(tmp_path / "out.img")],
        ["rootfs", "--root", str(root)],
        ["ssh", "--host", "nobody@127.0.0.1", "--port", "9"],
    ):
        result = runner.invoke(app, [*args, *common])
        assert result.exit_code == 1, result.output
        assert "no wheel for 'grpcio>=1.60' (needed by flwr[dp])" in result.output
        assert f"Received: grpcio-1.68.0-{X86}.whl" in result.output
        assert "Traceback" not in result.output
    assert (image.read_bytes(), image.stat().st_mtime_ns) == before
    assert not (tmp_path / "out.img").exists()
    assert [p.name for p in root.rglob("*")] == ["etc"]
    assert sorted(p.relative_to(ca) for p in ca.rglob("*")) == ca_files  # nothing issued


def test_cli_builds_a_wheelhouse_by_default_and_from_index_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[Any, ...]] = []
    wh = complete(tmp_path / "wh")

    def ensure(python: str, platform: str, extras: tuple[str, ...], **_: Any) -> Path:
        asked.append((python, platform, extras))
        return wh

    monkeypatch.setattr(wheelhouse, "ensure", ensure)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    base = ["rootfs", "--root", str(root), "--device-id", "kitchen-pi"]
    done = runner.invoke(app, [*base, "--package", "orchard-fl[agent]", "--python", "3.13"])
    assert done.exit_code == 0, done.output
    assert asked == [("3.13", "aarch64", ("agent",))]
    script = (root / "usr/local/lib/orchard/install.sh").read_text()
    assert "SOURCE=wheelhouse" in script
    assert (
        root
        / "var/cache/orchard/wheelhouse"
        / "grpcio-1.68.0-cp311-cp311-manylinux2014_aarch64.whl"
    ).exists()
    indexed = runner.invoke(
        app, [*base, "--from-index", "--index-url", "https://pypi.example/simple"]
    )
    assert indexed.exit_code == 0, indexed.output
    assert len(asked) == 1
    assert "SOURCE=index" in (root / "usr/local/lib/orchard/install.sh").read_text()
    for args, message in (
        (
            ["--index-url", "https://pypi.example/simple"],
            "index_url: expected only with --from-index",
        ),
        (["--from-index", "--wheelhouse", str(wh)], "wheelhouse: expected no wheelhouse with"),
        (["--package", "numpy"], "package: expected orchard-fl[EXTRA,...]"),
        (["--device-id", "bad id"], "device_id: expected"),
    ):
        refused = runner.invoke(app, [*base, *args])
        assert refused.exit_code == 1 and message in refused.output, refused.output
    assert len(asked) == 1  # nothing was built for a wrong option
