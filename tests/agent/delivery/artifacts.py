"""A real HTTP artifact server for delivery tests: serves bundles, can cut or alter a file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agent.delivery.desired import Artifact, Desired
from models.manifest import MANIFEST_FILE, MODEL_FILE, sha256_file


@dataclass
class Faults:
    cut: set[str] = field(default_factory=set)  # send half the body, then close
    alter: set[str] = field(default_factory=set)  # flip one byte (same size)
    requests: list[str] = field(default_factory=list)
    extra: dict[str, bytes] = field(default_factory=dict)  # more files beside every version


@dataclass
class ArtifactServer:
    url: str
    versions: dict[str, Path]
    faults: Faults

    def artifact(self, version: str, **extra: str | None) -> Artifact:
        bundle = self.versions[version]
        return Artifact(
            version=version,
            sha256=sha256_file(bundle / MODEL_FILE),
            size=(bundle / MODEL_FILE).stat().st_size,
            manifest_sha256=sha256_file(bundle / MANIFEST_FILE),
            manifest_size=(bundle / MANIFEST_FILE).stat().st_size,
            url=f"{self.url}/models/{version}",
            **extra,  # type: ignore[arg-type]
        )

    def fetched(self, name: str) -> int:
        return sum(1 for r in self.faults.requests if r.endswith("/" + name))


def desired(device: str, seq: int, artifact: Artifact | None, rollout: str | None = None) -> bytes:
    return Desired(device, seq, 1.0e9 + seq, artifact, rollout).to_json().encode()


@contextmanager
def serve(versions: dict[str, Path]) -> Iterator[ArtifactServer]:
    faults = Faults()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            faults.requests.append(self.path)
            parts = self.path.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "models" or parts[1] not in versions:
                self.send_error(404)
                return
            path = versions[parts[1]] / parts[2]
            name = parts[2]
            if name in faults.extra:
                body = faults.extra[name]
            elif path.is_file():
                body = path.read_bytes()
            else:
                self.send_error(404)
                return
            if name in faults.alter:
                body = body[:-1] + bytes([body[-1] ^ 0xFF])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if name in faults.cut:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield ArtifactServer(f"http://127.0.0.1:{httpd.server_address[1]}", versions, faults)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
