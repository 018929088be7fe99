"""Agent software updates on the emulated arm64 board: real systemd, real venvs, real pip.

The board is provisioned with the fleet CA (``orchard-provision image --ca``); the laptop runs
``orchard-coordinator serve`` (health ingest, artifact server with the signed releases) and
the operator runs ``orchard-coordinator fleet update --wheelhouse DIR``, the command a user
runs. The releases are the board's own wheelhouse with Orchard's wheel re-versioned
(tests/board/releases.py). In one boot sequence:

1. a good release (0.1.1): staged by the agent, installed by orchard-update.service into the
   other environment, switched, handed over to (agent/handover.py), judged healthy
   (``/healthz``, the model's golden inputs under the new runtime) and kept; predictions keep
   being answered, and the longest time without an answer is measured from the laptop;
2. a broken release (0.1.2: installs, but its agent cannot start): switched, its agent fails
   before it serves, the old agent goes on and the link goes back; the board runs 0.1.1 and
   says why;
3. a power cut (QEMU killed) while a third release (0.1.3) is on trial after the switch: the
   next boot's orchard-update-recover.service puts the link back on the complete 0.1.1
   environment before the agent starts, and the agent reports the rollback.

Figures (emulated: TCG is several times slower than a Pi 4) go to figures.json and
docs/software-update.md.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.health.helpers import Collector
from tests.board import guest
from tests.board.conftest import Artifacts, MakeBoard
from tests.board.host import BIN
from tests.board.qemu import Boot, GuestForward, Network
from tests.board.releases import bump
from tests.board.steps import INSTALL_READY_S, MQTT_IP, READINGS, after_firstrun, firstrun
from tests.brokers import MosquittoBroker, free_port
from tests.lifecycle.fleet import coordinator_serving

pytestmark = [pytest.mark.board, pytest.mark.slow, pytest.mark.timeout(3 * 60 * 60)]

DELIVERY_IP = "10.0.2.102"  # the laptop's artifact server, as the board sees it (guestfwd)
UPDATE_S = 45 * 60  # one update on the emulated board: download, install (~3 min), judge
DEVICE = "board-up"


def _wheelhouse(dest: Path) -> Path:
    done = subprocess.run(
        [str(BIN / "orchard-provision"), "wheelhouse", "--out", str(dest), "--extras", "agent"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return dest


def _coordinator_toml(tmp: Path, broker: int, delivery: int, ca: Path) -> Path:
    cfg = tmp / "coordinator.toml"
    cfg.write_text(
        f'state_dir = "{tmp / "coord"}"\n'
        f"[superlink]\nport = {free_port()}\n"
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker}\n'
        f"[dashboard]\nport = {free_port()}\n"
        f'[delivery]\nhost = "127.0.0.1"\nport = {delivery}\n'
        f'base_url = "http://{DELIVERY_IP}:8781"\n'
        f'signing_cert = "{ca / "signers" / "coordinator.pem"}"\n'
        f'signing_key = "{ca / "signers" / "coordinator.key"}"\n'
    )
    return cfg


def _fleet_update(cfg: Path, wheelhouse: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(BIN / "orchard-coordinator"), "fleet", "update", "--wheelhouse", str(wheelhouse),
            "--device", DEVICE, "--timeout", f"{UPDATE_S}s", "--config", str(cfg),
        ],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


class Downtime:
    """Predictions from the laptop, one after another (0.2 s apart, 15 s timeout each).

    ``unanswered_s``: the longest time between two answers (what a client waits through);
    ``failed``: requests refused or failed (with the socket kept by systemd across the
    restart, a request sent meanwhile waits instead); ``slowest_s``: the longest request.
    """

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.stop = threading.Event()
        self.answers: list[float] = []
        self.walls: list[float] = []  # time.time() of each answer, to find it in the journal
        self.failed = 0
        self.slowest = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                ok = (
                    self.client.post(
                        "/api/predict", json={"readings": READINGS}, timeout=15.0
                    ).status_code
                    == 200
                )
            except httpx.HTTPError:
                ok = False
            done = time.monotonic()
            self.slowest = max(self.slowest, done - sent)
            if ok:
                self.answers.append(done)
                self.walls.append(time.time())
            else:
                self.failed += 1
            self.stop.wait(0.2)

    def close(self) -> dict[str, float]:
        self.stop.set()
        self._thread.join(20)
        gaps = [b - a for a, b in itertools.pairwise(self.answers)]
        worst = gaps.index(max(gaps)) if gaps else 0
        return {
            "unanswered_s": round(max(gaps, default=0.0), 1),
            "unanswered_from": time.strftime(
                "%H:%M:%S", time.localtime(self.walls[worst] if self.walls else 0)
            ),
            "failed": self.failed,
            "answered": len(self.answers),
            "slowest_s": round(self.slowest, 1),
        }


def _restart_log(boot: Boot, path: Path) -> None:
    """The agent unit's stop and start around the switch, with the guest's monotonic clock."""
    path.write_text(
        boot.qga.exec(
            "journalctl -u orchard-agent -u orchard-update -o short-monotonic --no-pager -n 400"
        ).out
    )


def _finish(proc: subprocess.Popen[str], log: Path, boot: Boot, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert boot.alive, f"the board stopped\n{guest.diagnose(boot)}"
        assert time.monotonic() < deadline, f"fleet update still running\n{log.read_text()}"
        time.sleep(2.0)
    return log.read_text()


def _journal(boot: Boot) -> dict[str, Any]:
    out = boot.qga.exec("cat /opt/orchard/update.json 2>/dev/null || echo '{}'").out
    try:
        doc: dict[str, Any] = json.loads(out or "{}")
        return doc
    except ValueError:
        return {}


def _running(boot: Boot) -> tuple[str, str]:
    link = boot.qga.sh("readlink /opt/orchard/venv").strip()
    version = boot.qga.sh("/opt/orchard/venv/bin/orchard-agent version", timeout=600).split()[1]
    return link, version


def _update_events(collector: Collector) -> list[dict[str, Any]]:
    return [
        m.json()["data"]
        for m in collector.on("/event")
        if m.json().get("kind") == "software_update"
    ]


def test_update_rollback_and_power_cut(
    make_board: MakeBoard,
    mosquitto_broker: MosquittoBroker,
    board_bundle: Path,
    board_artifacts: Artifacts,
    tmp_path: Path,
) -> None:
    from provisioning.ca import FleetCA

    ca_dir = tmp_path / "ca"
    ca = FleetCA.init(ca_dir)
    ca.signer_cert("coordinator")
    base = _wheelhouse(tmp_path / "wheelhouse-0.1.0")
    good = bump(base, tmp_path / "wheelhouse-0.1.1", "0.1.1")
    broken = bump(base, tmp_path / "wheelhouse-0.1.2", "0.1.2", broken=True)
    third = bump(base, tmp_path / "wheelhouse-0.1.3", "0.1.3")

    made = make_board(
        DEVICE,
        mqtt=f"mqtt://{MQTT_IP}:1883",
        extra=("--ca", str(ca_dir)),
        wheelhouse=base,
    )
    board = made.board
    http_port, delivery_port = free_port(), free_port()
    network = Network(
        hostfwd=((http_port, 8765),),
        guestfwd=(
            GuestForward(MQTT_IP, 1883, mosquitto_broker.port),
            GuestForward(DELIVERY_IP, 8781, delivery_port),
        ),
    )
    cfg = _coordinator_toml(tmp_path, mosquitto_broker.port, delivery_port, ca_dir)
    collector = Collector(mosquitto_broker.port, (f"orchard/v1/{DEVICE}/#",))
    client = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120)
    figures: dict[str, Any] = {}
    try:
        with coordinator_serving(cfg, tmp_path / "coordinator.log", timeout=120):
            boot1 = board.boot(network)
            firstrun(boot1)
            after_firstrun(board.image)
            boot = board.boot(network)
            guest.wait_agent_ready(boot, INSTALL_READY_S)
            guest.push_model(boot.qga, board_bundle, "rooms-1")
            guest.wait(boot, lambda: guest.model_loaded(client), 600, "the pushed model")
            guest.wait(boot, lambda: collector.on("/birth"), 600, "the board's birth")
            assert boot.qga.exec("systemctl is-enabled orchard-update.path").out.strip() == (
                "enabled"
            )

            # 1. A good release: installed beside the running one, switched, kept.
            watch = Downtime(client)
            log = tmp_path / "update-0.1.1.log"
            out = _finish(_fleet_update(cfg, good, log), log, boot, UPDATE_S)
            downtime = watch.close()
            _restart_log(boot, made.workdir / "restart-0.1.1.log")
            assert "board-up: applied" in out, out
            assert _running(boot) == ("venv-b", "0.1.1")
            assert guest.model_loaded(client)
            assert client.post("/api/predict", json={"readings": READINGS}).status_code == 200
            events = _update_events(collector)
            assert events and events[-1]["outcome"] == "applied", events
            births = [m.json() for m in collector.on("/birth")]
            assert births[-1]["agent_version"] == "0.1.1", births[-1]
            figures["good_update"] = {
                **{k: v for k, v in events[-1].items() if k.endswith("_s")},
                "predictions": downtime,
                "socket_kept_by_systemd": "the socket systemd kept"
                in (made.workdir / "restart-0.1.1.log").read_text(),
                "fleet_update_output": out.splitlines()[-6:],
            }
            board_artifacts.record(software_update=figures)

            # 2. A broken release: its agent cannot start; the board switches back by itself.
            watch = Downtime(client)
            log = tmp_path / "update-0.1.2.log"
            proc = _fleet_update(cfg, broken, log)
            out = _finish(proc, log, boot, UPDATE_S)
            downtime = watch.close()
            _restart_log(boot, made.workdir / "restart-0.1.2.log")
            assert proc.returncode == 1, out
            assert "board-up: rolled_back" in out and "did not start" in out, out
            assert _running(boot) == ("venv-b", "0.1.1")
            assert client.post("/api/predict", json={"readings": READINGS}).status_code == 200
            events = _update_events(collector)
            assert events[-1]["outcome"] == "rolled_back", events
            figures["broken_update"] = {
                **{k: v for k, v in events[-1].items() if k.endswith("_s")},
                "predictions": downtime,
                "fleet_update_output": out.splitlines()[-6:],
            }
            board_artifacts.record(software_update=figures)

            # 3. The power goes out while 0.1.3 is on trial (the link already names it).
            log = tmp_path / "update-0.1.3.log"
            proc = _fleet_update(cfg, third, log)
            guest.wait(
                boot,
                lambda: (
                    _journal(boot).get("phase") == "switched"
                    and _journal(boot).get("version") == "0.1.3"
                ),
                UPDATE_S,
                "0.1.3 switched in",
            )
            board.kill()  # the power cut
            cut_at = time.monotonic()
            boot = board.boot(network)
            guest.wait_agent_ready(boot, INSTALL_READY_S)
            assert _running(boot) == ("venv-b", "0.1.1")
            journal = _journal(boot)
            assert journal["phase"] == "rolled_back", journal
            assert "power went out" in journal["reason"], journal
            recover = guest.unit(boot.qga, "orchard-update-recover.service")
            assert recover["Result"] == "success", recover
            out = _finish(proc, log, boot, UPDATE_S)
            assert proc.returncode == 1 and "board-up: rolled_back" in out, out
            assert "power went out" in out, out
            # Both environments are complete: pip's own check finds nothing missing or broken.
            for slot in ("venv-a", "venv-b"):
                boot.qga.sh(f"/opt/orchard/{slot}/bin/python -m pip check", timeout=600)
            guest.wait(boot, lambda: guest.model_loaded(client), 600, "the model after the cut")
            assert client.post("/api/predict", json={"readings": READINGS}).status_code == 200
            figures["power_cut"] = {
                "cut_to_ready_s": round(time.monotonic() - cut_at, 1),
                "fleet_update_output": out.splitlines()[-6:],
            }
            board_artifacts.record(software_update=figures)
    except BaseException:
        if board.boots:
            (made.workdir / "diagnosis.log").write_text(
                guest.diagnose(board.boots[-1])
                + "\n"
                + guest.journal(board.boots[-1].qga, "orchard-update.service", lines=300)
            )
        raise
    finally:
        collector.close()
        client.close()
        board.kill()
