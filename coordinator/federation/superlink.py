"""Run Flower's SuperLink as a child process, and talk to it with the ``flwr`` CLI.

The SuperLink keeps its state in ``--database`` (boards survive a coordinator restart), never
installs run dependencies (offline laptops; the FAB's code is the installed packages), and has
telemetry and update checks off. One port serves SuperNodes, the CLI and the ServerApp.

With ``supernode_auth`` only SuperNodes whose public key was registered may join. Flower 1.41
has no key list file any more: keys are registered through the Control API (``flwr supernode
register <key.pub>``, which returns the node id) and removed with ``flwr supernode unregister
<node-id>``. ``sync_supernodes(dir)`` keeps the SuperLink in step with a directory of keys (the
fleet CA's ``supernodes/``): new keys are registered, keys that left (revoked devices) are
unregistered; ``registered.json`` in the work dir remembers which node id each key got.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.federation.errors import RunFailed, SuperLinkError
from orchard_common import procs

logger = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
CONNECTION = "orchard"


def flower_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "PYTHONUNBUFFERED": "1",
        "PATH": str(BIN) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
    }


@dataclass(frozen=True)
class SuperLinkSettings:
    host: str = "127.0.0.1"
    port: int = 9092
    workdir: Path = Path("orchard-state/superlink")
    certificates: tuple[Path, Path, Path] | None = None  # CA, server cert, server key
    supernode_auth: bool = False  # --enable-supernode-auth: only registered keys may join
    supernode_keys: Path | None = None  # a directory of *.pub (the fleet CA's supernodes/)

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"{host}:{self.port}"


class SuperLink:
    def __init__(self, settings: SuperLinkSettings) -> None:
        self.settings = settings
        self.workdir = settings.workdir.resolve()
        self.home = self.workdir / "flwr-home"
        self.cli_home = self.workdir / "cli-home"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        s = self.settings
        cmd = [
            str(BIN / "flower-superlink"),
            "--database",
            str(self.workdir / "state.db"),
            "--disable-runtime-dependency-installation",
            "--host",
            s.host,
            "--port",
            str(s.port),
        ]
        if s.certificates:
            ca, cert, key = s.certificates
            cmd += [
                "--ssl-ca-certfile",
                str(ca),
                "--ssl-certfile",
                str(cert),
                "--ssl-keyfile",
                str(key),
            ]
        else:
            cmd.append("--insecure")
        if s.supernode_auth:
            cmd += ["--enable-supernode-auth"]
        return cmd

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(exist_ok=True)
        self._write_cli_config()
        log = (self.workdir / "superlink.log").open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=flower_env(self.home),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        url = (
            f"{'https' if self.settings.certificates else 'http'}://{self.settings.address}/health"
        )
        # Its certificate is signed by the fleet CA, which the system store does not hold.
        context = (
            ssl.create_default_context(cafile=str(self.settings.certificates[0]))
            if self.settings.certificates
            else None
        )
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SuperLinkError(
                    f"flower-superlink exited with {self.proc.returncode}; see "
                    f"{self.workdir / 'superlink.log'}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                    if resp.status == 200:
                        logger.info("SuperLink up on %s", self.settings.address)
                        if self.settings.supernode_keys is not None:
                            self.sync_supernodes(self.settings.supernode_keys)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise SuperLinkError(f"the SuperLink did not answer {url} within {timeout:g} s")

    def stop(self, timeout: float = 20.0) -> None:
        procs.stop(self.proc, timeout)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- the flwr CLI ----------------------------------------------------------------------
    def _write_cli_config(self) -> None:
        self.cli_home.mkdir(parents=True, exist_ok=True)
        lines = [
            "[superlink]",
            f'default = "{CONNECTION}"',
            "",
            f"[superlink.{CONNECTION}]",
            f'address = "{self.settings.address}"',
        ]
        if self.settings.certificates:
            lines.append(f'root-certificates = "{self.settings.certificates[0]}"')
        else:
            lines.append("insecure = true")
        (self.cli_home / "config.toml").write_text("\n".join(lines) + "\n")

    def flwr(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run ``flwr ARGS --format json`` against this SuperLink and return its JSON."""
        cmd = [str(BIN / "flwr"), *args, "--format", "json"]
        try:
            done = subprocess.run(
                cmd,
                env=flower_env(self.cli_home),
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SuperLinkError(f"{' '.join(args[:1])} timed out after {timeout:g} s") from exc
        try:
            data = json.loads(done.stdout[done.stdout.find("{") :])
        except ValueError:
            raise SuperLinkError(
                f"flwr {args[0]} failed (rc {done.returncode}): "
                f"{(done.stderr or done.stdout)[-800:]}"
            ) from None
        if not data.get("success", False):
            raise SuperLinkError(f"flwr {args[0]}: {data.get('error-message', data)}")
        return data

    def submit(self, app_dir: Path, run_config: Path) -> str:
        data = self.flwr("run", str(app_dir), CONNECTION, "-c", str(run_config), timeout=120)
        return str(data["run-id"])

    def run_status(self, run_id: str) -> dict[str, Any]:
        runs = self.flwr("ls", CONNECTION, "--run-id", run_id)["runs"]
        if not runs:
            raise RunFailed(f"the SuperLink does not know run {run_id}")
        return runs[0]

    def stop_run(self, run_id: str) -> None:
        try:
            self.flwr("stop", run_id, CONNECTION)
        except SuperLinkError as exc:
            logger.warning("could not stop run %s: %s", run_id, exc)

    # -- SuperNode authentication ------------------------------------------------------------
    def register_supernode(self, public_key: Path) -> int | None:
        """Authorise one SuperNode key; its node id, or None if the SuperLink already had it."""
        try:
            data = self.flwr("supernode", "register", str(public_key), CONNECTION)
        except SuperLinkError as exc:
            if "already in use" in str(exc):
                return None
            raise
        node_id = int(data["node-id"])
        logger.info("registered SuperNode key %s as node %d", public_key.name, node_id)
        return node_id

    def unregister_supernode(self, node_id: int) -> None:
        self.flwr("supernode", "unregister", str(node_id), CONNECTION)
        logger.info("unregistered SuperNode %d", node_id)

    def sync_supernodes(self, directory: Path) -> dict[str, int]:
        """Register every ``*.pub`` in ``directory``, unregister keys that left it."""
        book = self.workdir / "registered.json"
        try:
            known: dict[str, int] = json.loads(book.read_text()) if book.is_file() else {}
        except (OSError, ValueError) as exc:
            raise SuperLinkError(f"{book} is unreadable ({exc}); delete it to re-sync") from exc
        present = {
            _key_id(path): path for path in sorted(Path(directory).glob("*.pub")) if path.is_file()
        }
        for key, path in present.items():
            if key not in known:
                node_id = self.register_supernode(path)
                if node_id is not None:
                    known[key] = node_id
        for key in [k for k in known if k not in present]:
            self.unregister_supernode(known.pop(key))
        book.write_text(json.dumps(known, indent=2, sort_keys=True))
        return known


def _key_id(path: Path) -> str:
    """SHA-256 of the key itself (type and base64, not the comment): a reissued key differs."""
    key = " ".join(path.read_text(encoding="ascii", errors="replace").split()[:2])
    return "SHA256:" + hashlib.sha256(key.encode()).hexdigest()
