"""No raw reading leaves a device, proven on the wire.

Two real ``orchard-agent run`` processes (SuperNode, per-message ClientApps, TensorFlow
trainer, health reporter) read their data through a CSV sensor in which some rows carry
sentinel values, exact in float32 and unlike any real figure. The readings go through the
sensor, the validator and the store, and the trainer fits on them. Every byte the agents send
passes a recording TCP relay: one in front of the SuperLink's Fleet API (plain gRPC), one in
front of Mosquitto (plain MQTT). After a federated round and a few health reports, no sentinel
appears in any capture as float64/float32 bytes (either byte order) or as text, while the same
search finds every sentinel in the devices' SQLite stores, and finds the train replies' metric
values in the Flower capture, so the detector demonstrably sees what it is looking for.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.federation.messages import TRAIN_KEYS
from coordinator.data import Table
from coordinator.demo import datasets
from coordinator.demo.fleet import Device, free_port, wait_connected, wait_until
from coordinator.demo.partition import Partitioning, split
from coordinator.federation.runconfig import RunSettings
from coordinator.federation.submit import follow, submit
from coordinator.federation.superlink import SuperLink, SuperLinkSettings
from tests.brokers import Broker
from tests.netproxy import TcpProxy
from tests.privacy import wire

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.fleet]

# Per device: (pressure_hpa, light_lux, co2_ppm) written into every 8th row of its first half.
SENTINELS = (
    (1013.9208984375, 612.5888671875, 1234.5673828125),
    (1009.0771484375, 588.4208984375, 987.6533203125),
)
FEATURES = ("pressure_hpa", "light_lux", "co2_ppm")


def _with_sentinels(part: Table, values: tuple[float, ...]) -> tuple[Table, int]:
    rows = part.values.astype(np.float64)
    cols = [part.features.index(name) for name in FEATURES]
    marked = list(range(0, len(rows) // 2, 8))
    for i in marked:
        rows[i, cols] = values
    return Table(part.features, rows, part.labels, None), len(marked)


def _write_exact(path: Path, table: Table) -> None:
    """CSV with ``repr`` of every value (``coordinator.data.write_csv`` keeps 6 digits)."""
    assert table.labels is not None
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow([*table.features, "label"])
        for row, label in zip(table.values, table.labels, strict=True):
            out.writerow([repr(float(v)) for v in row] + [label])


def _rows(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=2) as db:
            return int(db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
    except sqlite3.Error:
        return 0


def _store_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.glob("store.db*")) if p.is_file())


def test_no_sentinel_reading_leaves_a_device_in_any_encoding(
    tmp_path: Path, mosquitto: Broker
) -> None:
    for values in SENTINELS:
        assert all(float(np.float32(v)) == v for v in values), "sentinels must be exact in float32"
    prepared = datasets.prepare("synthetic", "classify", 2, seed=3)
    parts = split(prepared.train, 2, Partitioning.parse("iid"), seed=3)
    datasets.write_validation(tmp_path / "validation.csv", prepared.validation)
    link = SuperLink(SuperLinkSettings(port=free_port(), workdir=tmp_path / "link"))
    flower = TcpProxy(("127.0.0.1", link.settings.port))
    mqtt = TcpProxy((mosquitto.host, mosquitto.port))
    devices = [Device(i, f"priv-{i + 1}", tmp_path / f"d{i + 1}") for i in range(2)]
    expected_rows = []
    with flower, mqtt:
        link.start()
        try:
            for device, part, values in zip(devices, parts, SENTINELS, strict=True):
                table, marked = _with_sentinels(part, values)
                assert marked >= 10
                device.root.mkdir(parents=True)
                _write_exact(device.root / "readings.csv", table)
                expected_rows.append(len(table))
                device.configure(
                    superlink=f"127.0.0.1:{flower.port}",
                    sensor={
                        "driver": "csv",
                        "path": str(device.root / "readings.csv"),
                        "interval_s": 0.2,
                        "speed": 1000.0,
                        "max_rows_per_read": 500,
                    },
                    extra={
                        "mqtt": {"host": "127.0.0.1", "port": mqtt.port, "health_interval_s": 2.0},
                        "training": {"idle_scheduling": False},  # see test_e2e
                    },
                )
                device.start()
            wait_connected(devices, 180)
            for device, rows in zip(devices, expected_rows, strict=True):
                store = device.root / "store.db"
                wait_until(
                    f"{device.device_id} to store its readings",
                    lambda s=store, n=rows: _rows(s) >= n,
                    60,
                )

            settings = RunSettings(
                num_server_rounds=1,
                min_devices=2,
                round_timeout=180.0,
                wait_for_devices=60.0,
                local_epochs=1,
                model_spec=json.dumps(prepared.spec.to_dict()),
                model_name="priv",
                quantization="float32",
                out_dir=str(tmp_path / "runs"),
                validation=str(tmp_path / "validation.csv"),
            )
            run_id = submit(link, settings, tmp_path / "submit")
            history = follow(link, run_id, settings, timeout=400)
            ended = _health_counts(mqtt, devices)
            wait_until(
                "a health report from each device after the round",
                lambda: all(map(int.__gt__, _health_counts(mqtt, devices), ended)),
                30,
            )
        finally:
            for device in devices:
                device.stop()
            link.stop()
        sent_flower, sent_mqtt = flower.sent(), mqtt.sent()

    assert history["status"] == "completed"
    train = history["rounds"][0]["phases"]["train"]["replies"]
    assert len(train) == 2 and all("error" not in r for r in train), train
    assert all(r["metric_keys"] == sorted(TRAIN_KEYS) for r in train)

    sentinels = [v for values in SENTINELS for v in values]
    # the detector works: it finds every sentinel in the stores, in the bytes SQLite wrote
    for device, values in zip(devices, SENTINELS, strict=True):
        found = wire.find(_store_bytes(device.root), list(values), device.device_id + " store")
        assert {h.value for h in found if h.encoding == "float32-le"} == set(values), found
    # ... and the sentinels are in the rows the trainers fitted on
    _assert_trained_on(devices, prepared)
    # ... and it finds what the devices did send: their train metrics, as protobuf doubles
    views = wire.flower_views(sent_flower)
    assert len(views) > 10, "no request bodies rebuilt from the Flower capture"
    messages = b"".join(blob for where, blob in views[1:])
    for reply in train:
        loss = float(reply["metrics"]["loss"])
        assert wire.find(messages, [loss], "flower"), f"train loss {loss!r} not in the capture"
    assert b"priv-1" in sent_mqtt and b"/health" in sent_mqtt

    leaks = [hit for where, blob in views for hit in wire.find(blob, sentinels, where)]
    leaks += wire.find(sent_mqtt, sentinels, "mqtt")
    assert not leaks, leaks
    assert len(sent_flower) > 10_000 and len(sent_mqtt) > 1_000


def _health_counts(proxy: TcpProxy, devices: list[Device]) -> list[int]:
    """How many health messages each device has published through ``proxy`` so far."""
    sent = proxy.sent()
    return [sent.count(f"{d.device_id}/health".encode()) for d in devices]


def _assert_trained_on(devices: list[Device], prepared: datasets.Prepared) -> None:
    from agent.store import open_store
    from agent.store.options import StoreSettings
    from agent.trainer.data import load

    for device, values in zip(devices, SENTINELS, strict=True):
        store = open_store(StoreSettings(path=device.root / "store.db"))
        try:
            data = load(store, prepared.spec)
        finally:
            store.close()
        names = prepared.spec.input.feature_names
        for name, value in zip(FEATURES, values, strict=True):
            column = data.x_train[:, names.index(name)]
            assert np.sum(column == np.float32(value)) >= 5, (device.device_id, name)
