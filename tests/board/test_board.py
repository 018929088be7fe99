"""A board in a box: the real first boot of a provisioned image, emulated (TCG, no KVM).

A Debian Bookworm arm64 disk laid out like Raspberry Pi OS (tests/board/image.py) is
provisioned with ``orchard-provision image`` — the command a user runs — and booted with
``qemu-system-aarch64 -M virt -cpu cortex-a72 -m 1024`` and real systemd. The laptop side
runs on this host: a Mosquitto on 127.0.0.1 reached by the board through ``guestfwd``, the
board's HTTP port reached through ``hostfwd`` on 127.0.0.1 (user networking, restrict=on).

Every figure here is emulated: TCG runs an arm64 board several times slower than a Pi 4.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import pytest

from coordinator.federation.superlink import SuperLink, SuperLinkSettings
from tests.agent.health.helpers import Collector
from tests.board import guest
from tests.board.conftest import Artifacts, MakeBoard
from tests.board.qemu import BoardError, Boot
from tests.board.steps import (
    INSTALL_READY_S,
    MQTT_IP,
    READINGS,
    SUPERLINK_IP,
    after_firstrun,
    firstrun,
    laptop_network,
)
from tests.brokers import MosquittoBroker, free_port

pytestmark = [pytest.mark.board, pytest.mark.slow, pytest.mark.timeout(3 * 60 * 60)]


def test_first_boot_serves_predictions_and_reports_health(
    make_board: MakeBoard,
    mosquitto_broker: MosquittoBroker,
    superlink: SuperLink,
    board_bundle: Path,
    board_artifacts: Artifacts,
) -> None:
    """orchard-fl[agent] from the card's wheelhouse; its SuperNode joins the host's SuperLink."""
    made = make_board(
        "board-1",
        mqtt=f"mqtt://{MQTT_IP}:1883",
        extra=("--coordinator", f"{SUPERLINK_IP}:9092", "--insecure"),
    )
    board, device = made.board, made.device_id
    http_port = free_port()
    network = laptop_network(http_port, mosquitto_broker.port, superlink.settings.port)
    collector = Collector(mosquitto_broker.port, (f"orchard/v1/{device}/#",))
    figures: dict[str, object] = {"provision_s": round(made.provision_s, 1)}
    try:
        boot1 = board.boot(network)
        assert "systemd.run=/boot/firmware/firstrun.sh" in boot1.cmdline
        figures["firstrun_boot_s"] = round(firstrun(boot1), 1)
        cmdline = after_firstrun(board.image)

        boot2 = board.boot(network)
        assert boot2.cmdline == cmdline.splitlines()[0].strip()
        agent = guest.wait_agent_ready(boot2, INSTALL_READY_S)
        ready_host = time.monotonic() - boot2.started
        qga = boot2.qga
        first = guest.unit(qga, guest.FIRSTBOOT)
        assert first["Result"] == "success" and first["ActiveState"] == "active", first
        figures.update(
            boot_to_ready_s=round(guest.monotonic_s(agent, "ActiveEnterTimestampMonotonic"), 1),
            boot_to_ready_host_s=round(ready_host, 1),
            firstboot_install_s=round(
                guest.monotonic_s(first, "ActiveEnterTimestampMonotonic")
                - guest.monotonic_s(first, "InactiveExitTimestampMonotonic"),
                1,
            ),
            agent_start_to_ready_s=round(
                guest.monotonic_s(agent, "ActiveEnterTimestampMonotonic")
                - guest.monotonic_s(agent, "ExecMainStartTimestampMonotonic"),
                1,
            ),
            systemd_analyze=guest.startup(qga),
        )

        # What the first boot must have done, checked on the running board.
        proc_cmdline = qga.sh("cat /proc/cmdline")
        assert "cgroup_enable=memory" in proc_cmdline and "systemd.run" not in proc_cmdline
        assert "memory" in qga.sh("cat /sys/fs/cgroup/cgroup.controllers").split()
        assert qga.sh("hostname").strip() == "board-1"
        ids = qga.sh("id orchard")
        assert "(i2c)" in ids, ids
        assert qga.sh("stat -c '%a %U %G' /etc/orchard/agent.toml").split() == [
            "640",
            "root",
            "orchard",
        ]
        assert qga.exec("systemctl is-active orchard-trainer.socket").out.strip() == "active"
        memory_max = qga.sh("systemctl show -p MemoryMax --value orchard-trainer.service")
        assert memory_max.strip() == str(768 * 1024 * 1024), memory_max
        version = qga.sh("/opt/orchard/venv/bin/orchard-agent version", timeout=600)
        figures["agent_version"] = version.strip()

        # The laptop sees the board: birth and health on its Mosquitto.
        guest.wait(
            boot2,
            lambda: collector.on("/birth") and collector.on("/health"),
            600,
            "birth and health from the board on the host's Mosquitto",
        )
        birth = collector.on("/birth")[-1].json()
        health = collector.on("/health")[-1].json()
        figures["birth"] = birth
        assert birth.get("device_id", device) == device

        # The SuperNode (the agent's child, under the agent unit's hardening) joins the
        # laptop's SuperLink through guestfwd.
        client = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120)
        guest.wait(boot2, lambda: guest.supernode_connected(client), 900, "the SuperNode")
        figures["supernode_connected_after_ready_s"] = round(
            time.monotonic() - boot2.started - ready_host, 1
        )
        figures["agent_unit_footprint"] = guest.footprint(qga)

        # A model, then predictions from the laptop through hostfwd.
        assert guest.healthz(client)["model_loaded"] is False
        guest.push_model(qga, board_bundle, "rooms-1")
        guest.wait(boot2, lambda: guest.model_loaded(client), 600, "the pushed model")
        started = time.perf_counter()
        answer = client.post("/api/predict", json={"readings": READINGS})
        first_ms = (time.perf_counter() - started) * 1000
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["label"] in ("empty", "occupied", "ventilating")
        laps = []
        for _ in range(30):
            started = time.perf_counter()
            assert client.post("/api/predict", json={"readings": READINGS}).status_code == 200
            laps.append((time.perf_counter() - started) * 1000)
        latest = client.get("/api/predict/latest")
        assert latest.status_code == 200, latest.text
        figures.update(
            first_prediction_ms=round(first_ms, 1),
            prediction_p50_ms=round(statistics.median(laps), 1),
            inference_runtime=answer.json().get("runtime")
            or client.get("/api/info").json().get("runtime"),
        )

        # Footprint and hardening, measured inside the guest.
        rss_kb, hwm_kb = guest.agent_rss_kb(qga)
        agent_exposure, table = guest.exposure(qga, guest.AGENT)
        trainer_exposure, _ = guest.exposure(qga, guest.TRAINER)
        (made.workdir / "security-agent.log").write_text(table)
        figures.update(
            agent_rss_mb=round(rss_kb / 1024, 1),
            agent_rss_peak_mb=round(hwm_kb / 1024, 1),
            exposure_agent=agent_exposure,
            exposure_trainer=trainer_exposure,
            health_rss=health.get("agent", {}).get("rss_mb")
            if isinstance(health.get("agent"), dict)
            else None,
        )
        final = guest.unit(qga, guest.AGENT)
        assert final["NRestarts"] == "0", final
        board_artifacts.record(first_boot=figures)

        # An ordinary reboot: the installer finds everything in place, the model survives.
        boot2.qga.shutdown("reboot")
        assert boot2.wait(600) == 0
        boot3 = board.boot(network)
        agent = guest.wait_agent_ready(boot3, INSTALL_READY_S)
        installer_log = guest.journal(boot3.qga, guest.FIRSTBOOT)
        assert "already installed; nothing changed" in installer_log, installer_log
        guest.wait(boot3, lambda: guest.model_loaded(client), 600, "the model after a reboot")
        started = time.perf_counter()
        assert client.post("/api/predict", json={"readings": READINGS}).status_code == 200
        figures.update(
            reboot_to_ready_s=round(guest.monotonic_s(agent, "ActiveEnterTimestampMonotonic"), 1),
            reboot_agent_start_to_ready_s=round(
                guest.monotonic_s(agent, "ActiveEnterTimestampMonotonic")
                - guest.monotonic_s(agent, "ExecMainStartTimestampMonotonic"),
                1,
            ),
            reboot_first_prediction_ms=round((time.perf_counter() - started) * 1000, 1),
            reboot_systemd_analyze=guest.startup(boot3.qga),
        )
        board_artifacts.record(first_boot=figures)
        assert agent_exposure <= 2.5, table
    except BaseException:
        if board.boots:
            (made.workdir / "diagnosis.log").write_text(guest.diagnose(board.boots[-1]))
        raise
    finally:
        collector.close()
        board.kill()


def _wait_for_install(boot: Boot, timeout: float, packages: int) -> int:
    """Until pip has installed ``packages`` packages into the venv (bounded); how many."""
    deadline = time.monotonic() + timeout
    boot.qga.wait_up(timeout, alive=lambda: boot.alive)
    while time.monotonic() < deadline:
        if not boot.alive:
            raise BoardError(f"the board stopped during the install\n{boot.tail(60)}")
        count = boot.qga.exec(
            "ls -d /opt/orchard/venv/lib/python3*/site-packages/*.dist-info 2>/dev/null | wc -l"
        ).out.strip()
        if int(count or 0) >= packages:
            return int(count)
        time.sleep(3)
    raise TimeoutError(f"pip did not get going within {timeout:.0f} s\n{boot.tail(60)}")


def _wait_console(boot: Boot, text: str, timeout: float) -> float:
    """Until ``text`` shows on the serial console (read on the host: no load on the guest)."""
    deadline = time.monotonic() + timeout
    while text not in boot.console_text():
        if not boot.alive:
            raise BoardError(f"the board stopped before {text!r}\n{boot.tail(60)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} within {timeout:.0f} s\n{boot.tail(60)}")
        time.sleep(0.1)
    return time.monotonic()


def test_power_cut_during_offline_install_then_next_boot_finishes(
    make_board: MakeBoard,
    mosquitto_broker: MosquittoBroker,
    board_artifacts: Artifacts,
    tmp_path: Path,
) -> None:
    """No network at all (no NIC), and the power cut twice: mid-install, then right after the
    installer recorded the install as done. The next boot completes it, every installed file is
    what pip's RECORD says, and the agent is never started half-installed.

    The wheelhouse is on the image, so the install never needs a network. Then the cable goes
    in, while the laptop's broker and SuperLink are still down: the board serves anyway, and
    joins both once they come up.
    """
    made = make_board(
        "board-2",
        mqtt=f"mqtt://{MQTT_IP}:1883",
        extra=("--coordinator", f"{SUPERLINK_IP}:9092", "--insecure"),
    )
    board, device = made.board, made.device_id
    figures: dict[str, object] = {}
    mosquitto_broker.stop()  # the laptop is not up yet: both forwards lead nowhere
    link = SuperLink(SuperLinkSettings(port=free_port(), workdir=tmp_path / "superlink"))
    http_port = free_port()
    network = laptop_network(http_port, mosquitto_broker.port, link.settings.port)
    collector: Collector | None = None
    try:
        firstrun(board.boot(None))
        after_firstrun(board.image)
        boot2 = board.boot(None)
        # Mid-install, with the last ~30 s of pip's writes still in the page cache.
        installed = _wait_for_install(boot2, INSTALL_READY_S, packages=30)
        figures["packages_installed_at_power_cut"] = installed
        board.power_cut()

        # The next boot resumes the install; cut again the moment it says it is done (its
        # stamp written, pip's last files possibly still only in the page cache).
        boot3 = board.boot(None)
        _wait_console(boot3, "orchard-install: installed", INSTALL_READY_S)
        board.power_cut()
        for boot in (boot2, boot3):
            assert "orchard-agent.service: Main process exited" not in boot.console_text()

        boot4 = board.boot(network)  # the cable is in; the coordinator is still down
        agent = guest.wait_agent_ready(boot4, INSTALL_READY_S)
        qga = boot4.qga
        figures["installer_after_second_cut"] = [
            line.split("orchard-install: ", 1)[1]
            for line in guest.journal(qga, guest.FIRSTBOOT).splitlines()
            if "orchard-install: " in line
        ]
        first = guest.unit(qga, guest.FIRSTBOOT)
        assert first["Result"] == "success", first
        assert agent["NRestarts"] == "0", agent
        figures["boot_to_ready_after_power_cut_s"] = round(
            guest.monotonic_s(agent, "ActiveEnterTimestampMonotonic"), 1
        )
        check = qga.exec("/opt/orchard/venv/bin/python -m pip check", timeout=600)
        assert check.rc == 0, check.out + check.err
        checked, bad = guest.verify_installed_files(qga)
        figures["installed_files_verified"] = checked
        assert checked > 1000 and not bad, bad
        # Offline, the installer started at once (not after the network-online timeout).
        figures["installer_started_s"] = round(
            guest.monotonic_s(first, "InactiveExitTimestampMonotonic"), 1
        )
        assert guest.monotonic_s(first, "InactiveExitTimestampMonotonic") < 100, first
        health = qga.sh(
            'python3 -c "import urllib.request as u;'
            " print(u.urlopen('http://127.0.0.1:8765/healthz', timeout=60).read().decode())\"",
            timeout=120,
        )
        assert '"model_loaded"' in health, health

        # Serving from the laptop with the coordinator down; then it comes up and the board
        # joins it: birth and health on its broker, the SuperNode connected to its SuperLink.
        client = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120)
        assert not guest.supernode_connected(client)
        mosquitto_broker.start()
        link.start()
        up = time.monotonic()
        collector = joined = Collector(mosquitto_broker.port, (f"orchard/v1/{device}/#",))
        guest.wait(
            boot4,
            lambda: joined.on("/birth") and joined.on("/health"),
            900,
            "birth and health once the broker is up",
        )
        figures["mqtt_joined_after_coordinator_up_s"] = round(time.monotonic() - up, 1)
        guest.wait(boot4, lambda: guest.supernode_connected(client), 900, "the SuperNode")
        figures["supernode_joined_after_coordinator_up_s"] = round(time.monotonic() - up, 1)
        assert guest.unit(qga, guest.AGENT)["NRestarts"] == "0"
        board_artifacts.record(power_cut_offline=figures)
    except BaseException:
        if board.boots:
            (made.workdir / "diagnosis.log").write_text(guest.diagnose(board.boots[-1]))
        raise
    finally:
        if collector is not None:
            collector.close()
        board.kill()
        link.stop()
