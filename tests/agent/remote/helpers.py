"""What the remote-configuration tests share: a real fleet CA and its signer, the signer
certificate served over HTTP as the coordinator's artifact server does, and commands signed
with it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agent.remote.command import Command, signed_bytes
from orchard_common.signing import Signer, sign_artifact


@dataclass
class Fleet:
    """The fleet CA (``ca_pem`` is what a board's ``[models] trust_ca`` names), the
    coordinator's signer, a signer of another CA, and where ``/signer.pem`` is served."""

    ca_pem: Path
    signer: Signer
    stranger: Signer
    url: str
    requests: list[str] = field(default_factory=list)

    def command(
        self,
        device: str,
        seq: int,
        patch: Mapping[str, str | None],
        *,
        by: Signer | str | None = "fleet",
        expires_in: float = 600.0,
        issued: float | None = None,
    ) -> Command:
        """A command for ``device``, signed by the fleet's signer (``by=None``: unsigned)."""
        now = time.time() if issued is None else issued
        signer = self.signer if by == "fleet" else by
        where = "/stranger/signer.pem" if signer is self.stranger else "/signer.pem"
        command = Command(
            device_id=device,
            seq=seq,
            issued=now,
            expires=now + expires_in,
            kind="config",
            patch=dict(patch),
            signer_url=f"{self.url}{where}",
        )
        if signer is None:
            return command
        assert isinstance(signer, Signer)
        signed: Command = sign_artifact(command, signer, signed_bytes=signed_bytes)
        return signed


@contextmanager
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A real FleetCA with a code-signing certificate, served as ``/signer.pem``; the stranger's
    certificate is served as ``/stranger/signer.pem``."""
    from provisioning.ca import FleetCA

    ca = FleetCA.init(tmp_path / "ca")
    other = FleetCA.init(tmp_path / "other-ca")
    signer = Signer(*ca.signer_cert("coordinator"))
    stranger = Signer(*other.signer_cert("coordinator"))
    files = {"/signer.pem": signer.cert_pem, "/stranger/signer.pem": stranger.cert_pem}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            requests.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        yield Fleet(tmp_path / "ca" / "ca.pem", signer, stranger, url, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes (to prove nothing changed), but the signer
    certificates the board keeps once they verified (a cache, not configuration)."""
    if not directory.exists():
        return {}
    files = (p for p in directory.rglob("*") if p.is_file() and p.parent.name != "signers")
    return {str(p.relative_to(directory)): p.read_bytes() for p in files}
