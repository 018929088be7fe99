"""A release published by the coordinator (coordinator/software/release.py), served by the real
artifact server over HTTP on 127.0.0.1, staged by the agent's Stager with the real fetcher."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.delivery.fetch import HttpFetcher
from agent.remote.command import SoftwareRef
from agent.software.files import UpdateFiles
from agent.software.manifest import SoftwareManifest
from agent.software.stage import StageError, Stager
from coordinator.software.release import Release, software_dir
from orchard_common.signing import Signer
from tests.agent.software.helpers import served_release, wheelhouse


class CountingFetcher(HttpFetcher):
    def __init__(self) -> None:
        super().__init__(timeout_s=10.0)
        self.urls: list[str] = []

    def fetch(self, url: str, dest: Path, *, size: int | None, sha256: str | None) -> None:
        self.urls.append(url)
        super().fetch(url, dest, size=size, sha256=sha256)


@pytest.fixture
def served(tmp_path: Path, fleet: tuple[Path, Signer, Signer]) -> Iterator[tuple[Release, Path]]:
    """Release 0.2.0 published under <state>/software and served by the artifact server."""
    with served_release(tmp_path, fleet[1], "0.2.0") as served:
        yield served


def _stager(tmp_path: Path, ca: Path | None, fetcher: HttpFetcher, **kw: object) -> Stager:
    files = UpdateFiles(tmp_path / "board" / "state")
    files.dir.mkdir(parents=True, exist_ok=True)
    return Stager(files, fetcher, trust_ca=ca, running_version="0.1.0", local_wheels=None,
                  install_base=tmp_path / "board" / "opt", **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_published_release_is_fetched_checked_and_requested(
    tmp_path: Path, served: tuple[Release, Path], fleet: tuple[Path, Signer, Signer]
) -> None:
    release, _ = served
    fetcher = CountingFetcher()
    stager = _stager(tmp_path, fleet[0], fetcher)

    request = stager.stage(42, release.ref, fleet[1].cert_pem)

    assert (request.seq, request.version, request.from_version) == (42, "0.2.0", "0.1.0")
    staged = Path(request.staged)
    manifest = SoftwareManifest.from_json((staged / "manifest.json").read_bytes())
    assert manifest == release.manifest and manifest.signature is not None
    assert sorted(p.name for p in staged.glob("*.whl")) == sorted(w.file for w in manifest.wheels)
    assert stager.files.read_request() == request
    assert len(fetcher.urls) == 1 + len(manifest.wheels)

    # Staged again (the updater was slow, the command came again): nothing is downloaded twice.
    fetcher.urls.clear()
    stager.stage(43, release.ref, fleet[1].cert_pem)
    assert fetcher.urls == [release.url]


def test_wheels_on_the_card_are_not_downloaded(
    tmp_path: Path, served: tuple[Release, Path], fleet: tuple[Path, Signer, Signer]
) -> None:
    release, _ = served
    card = wheelhouse(tmp_path / "card", "0.1.0")  # orchard-dep 1.0 is the same wheel
    fetcher = CountingFetcher()
    stager = _stager(tmp_path, fleet[0], fetcher)
    stager.local_wheels = card
    stager.stage(1, release.ref, fleet[1].cert_pem)
    fetched = [u.rsplit("/", 1)[1] for u in fetcher.urls]
    assert fetched == ["manifest.json", "orchard_fl-0.2.0-py3-none-any.whl"]


def test_bad_releases_are_refused_naming_why(
    tmp_path: Path, served: tuple[Release, Path], fleet: tuple[Path, Signer, Signer]
) -> None:
    release, state = served
    stager = _stager(tmp_path, fleet[0], CountingFetcher())

    def refused(ref: SoftwareRef, pem: bytes = fleet[1].cert_pem) -> str:
        with pytest.raises(StageError) as info:
            stager.stage(1, ref, pem)
        assert not stager.files.request.exists()
        return str(info.value)

    assert "expected sha256" in refused(replace(release.ref, manifest_sha256="0" * 64))
    assert "manifest.version: expected '0.3.0'" in refused(replace(release.ref, version="0.3.0"))
    assert "(fingerprint)" in refused(release.ref, fleet[2].cert_pem)
    assert "HTTP 404" in refused(replace(release.ref, manifest_url=release.url + "x"))
    no_ca = _stager(tmp_path, None, CountingFetcher())
    with pytest.raises(StageError, match="fleet CA"):
        no_ca.stage(1, release.ref, fleet[1].cert_pem)

    # A wheel on the server that is not the one the signed manifest names: cut short or swapped.
    wheel = software_dir(state) / "0.2.0" / "orchard_fl-0.2.0-py3-none-any.whl"
    data = wheel.read_bytes()
    wheel.write_bytes(data[: len(data) // 2])
    assert "cut short" in refused(release.ref)
    wheel.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert "expected sha256" in refused(release.ref)
    wheel.write_bytes(data)
    assert stager.stage(2, release.ref, fleet[1].cert_pem).seq == 2


def test_a_full_disk_is_refused_before_the_download(
    tmp_path: Path,
    served: tuple[Release, Path],
    fleet: tuple[Path, Signer, Signer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, _ = served
    fetcher = CountingFetcher()
    stager = _stager(tmp_path, fleet[0], fetcher)
    stager.install_base.mkdir(parents=True)
    monkeypatch.setattr("agent.software.stage._free", lambda path: 1 << 20)
    with pytest.raises(StageError, match=r"disk: expected \d+ MB free .* \(the disk is full\)"):
        stager.stage(1, release.ref, fleet[1].cert_pem)
    assert fetcher.urls == [release.url]  # the manifest only
    assert not stager.files.request.exists()
