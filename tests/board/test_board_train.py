"""The slow variant: orchard-fl[agent,train] (TensorFlow) on the emulated 1 GB board, one
Flower round against a SuperLink on the host. Opt in with ORCHARD_BOARD_TRAIN=1
(``scripts/board.sh --train``); every figure is emulated (TCG).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from coordinator.federation.superlink import SuperLink
from tests.board import guest
from tests.board.conftest import Artifacts, MakeBoard
from tests.board.steps import INSTALL_READY_S, MQTT_IP, SUPERLINK_IP, firstrun, laptop_network
from tests.brokers import MosquittoBroker, free_port

pytestmark = [pytest.mark.board, pytest.mark.slow, pytest.mark.timeout(4 * 60 * 60)]

TRAIN_TOML = """\
# The emulated board's agent.toml for the train variant (orchard-provision adds [federation]).
[sensors.room]
driver = "synthetic"
interval_s = 1

[http]
host = "0.0.0.0"
lan = true

[mqtt]
health_interval_s = 10

[training]
memory_mb = 768          # MemoryMax= of orchard-trainer.service: most of a 1 GB board
max_seconds = 3000       # TCG: TensorFlow's import alone takes minutes
idle_timeout_s = 3600
"""


@pytest.mark.skipif(
    os.environ.get("ORCHARD_BOARD_TRAIN") != "1",
    reason="the train variant installs TensorFlow on the emulated board (slow: set "
    "ORCHARD_BOARD_TRAIN=1, or scripts/board.sh --train)",
)
def test_board_trains_one_flower_round_against_the_host_coordinator(
    make_board: MakeBoard,
    mosquitto_broker: MosquittoBroker,
    superlink: SuperLink,
    board_artifacts: Artifacts,
    tmp_path: Path,
) -> None:
    """orchard-fl[agent,train] on a 1 GB board, one FedAvg round from a SuperLink on the host."""
    from coordinator.federation.runconfig import RunSettings
    from coordinator.federation.submit import follow, submit
    from models import synthetic

    link = superlink
    made = make_board(
        "board-3",
        mqtt=f"mqtt://{MQTT_IP}:1883",
        package="orchard-fl[agent,train]",
        extra=("--coordinator", f"{SUPERLINK_IP}:9092", "--insecure"),
        toml=TRAIN_TOML,
        card_gib=8,
    )
    board = made.board
    http_port = free_port()
    network = laptop_network(http_port, mosquitto_broker.port, link.settings.port)
    figures: dict[str, object] = {"provision_s": round(made.provision_s, 1)}
    try:
        firstrun(board.boot(network))
        boot = board.boot(network)
        agent = guest.wait_agent_ready(boot, 2 * INSTALL_READY_S)
        figures["boot_to_ready_s"] = round(
            guest.monotonic_s(agent, "ActiveEnterTimestampMonotonic"), 1
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=120)
        guest.wait(boot, lambda: guest.supernode_connected(client), 1800, "the SuperNode")
        spec = synthetic.make("mlp", "classify", n=60).spec
        settings = RunSettings(
            num_server_rounds=1,
            min_devices=1,
            round_timeout=3000.0,
            wait_for_devices=600.0,
            local_epochs=1,
            model_spec=json.dumps(spec.to_dict()),
            model_name="board",
            quantization="float32",
            out_dir=str(tmp_path / "runs"),
        )
        started = time.monotonic()
        run_id = submit(link, settings, tmp_path / "run")
        history = follow(link, run_id, settings)
        figures["round_s"] = round(time.monotonic() - started, 1)
        figures["history"] = history
        rounds = history.get("rounds") or []
        assert rounds and rounds[0].get("failures") == 0, history
        assert len(rounds[0].get("selected") or []) == 1, history
        trainer = guest.unit(boot.qga, guest.TRAINER)
        peak = boot.qga.exec(
            "cat /sys/fs/cgroup/system.slice/orchard-trainer.service/memory.peak 2>/dev/null"
        ).out.strip()
        figures.update(
            trainer_state=trainer.get("ActiveState"),
            trainer_memory_peak_mb=round(int(peak) / 2**20, 1) if peak else None,
            trainer_memory_max=boot.qga.sh(
                "systemctl show -p MemoryMax --value orchard-trainer.service"
            ).strip(),
            footprint_during_run=guest.footprint(boot.qga),
            healthz_trainer=guest.healthz(client).get("trainer"),
            exposure_trainer=guest.exposure(boot.qga, guest.TRAINER)[0],
        )
        board_artifacts.record(train=figures)
    except BaseException:
        if board.boots:
            (made.workdir / "diagnosis.log").write_text(guest.diagnose(board.boots[-1]))
        raise
    finally:
        board.kill()
