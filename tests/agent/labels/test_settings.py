"""``[labels]`` in agent.toml: defaults, every wrong key named, and ``check-config``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError, InvalidConfig
from agent.labels import LabelSettings

BIN = Path(sys.executable).parent
BASE = 'device_id = "pi-1"\nstate_dir = "{state}"\n[sensors.env]\ndriver = "synthetic"\n'


def _load(tmp_path: Path, extra: str) -> config.AgentSettings:
    path = tmp_path / "agent.toml"
    path.write_text(BASE.format(state=tmp_path) + extra)
    return config.load(path)


def test_defaults(tmp_path: Path) -> None:
    labels = _load(tmp_path, "").labels
    assert labels == LabelSettings(path=tmp_path / "predictions.db")
    assert (labels.max_per_minute, labels.match_tolerance_s, labels.mqtt_topic) == (120, 30.0, None)
    assert (labels.max_predictions, labels.max_age_s) == (50_000, 14 * 86400.0)


def test_a_full_table(tmp_path: Path) -> None:
    labels = _load(
        tmp_path,
        '[mqtt]\nhost = "127.0.0.1"\n'
        '[labels]\nmax_per_minute = 30\nmatch_tolerance_s = 5\nmqtt_topic = "home/pi-1/labels"\n'
        'path = "/tmp/p.db"\nmax_predictions = 1000\nmax_age_s = 3600\n',
    ).labels
    assert labels == LabelSettings(Path("/tmp/p.db"), 30, 5.0, "home/pi-1/labels", 1000, 3600.0)


BAD = """
[mqtt]
host = "127.0.0.1"
[labels]
max_per_minute = 0
match_tolerance_s = -1
mqtt_topic = "home/+/labels"
max_predictions = 10
max_age_s = "a week"
max_per_minit = 5
"""


def test_every_wrong_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig) as err:
        _load(tmp_path, BAD)
    text = str(err.value)
    for expected in (
        "labels.max_per_minute: expected an integer in [1, 60000]. Received: max_per_minute=0",
        "labels.match_tolerance_s: expected a finite number in [0.0, 86400.0]. "
        "Received: match_tolerance_s=-1",
        "labels.mqtt_topic: expected a topic name of at most 256 characters without "
        "wildcards (+, #), empty levels or a leading $. Received: mqtt_topic='home/+/labels'",
        "labels.max_predictions: expected an integer in [100, 10000000]. "
        "Received: max_predictions=10",
        "labels.max_age_s: expected a positive number. Received: max_age_s='a week'",
        "labels.max_per_minit: expected a known option (",
        "did you mean 'max_per_minute'",
    ):
        assert expected in text, text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[labels]\nmqtt_topic = "home/labels"\n',
            "labels.mqtt_topic: expected no topic unless [mqtt] host is set. "
            "Received: mqtt_topic='home/labels'",
        ),
        (
            '[mqtt]\nhost = "h"\n[labels]\nmqtt_topic = "orchard/v1/pi-1/labels"\n',
            "labels.mqtt_topic: expected a topic outside [mqtt] topic_prefix (orchard/v1/...)",
        ),
        ('[labels]\nmqtt_topic = "a//b"\n', "labels.mqtt_topic: expected a topic name"),
        ('[labels]\nmqtt_topic = "$SYS/x"\n', "labels.mqtt_topic: expected a topic name"),
    ],
)
def test_the_label_topic(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(InvalidConfig, match=None) as err:
        _load(tmp_path, extra)
    assert expected in str(err.value), str(err.value)


def test_labels_must_be_a_table() -> None:
    data = {"device_id": "pi-1", "sensors": {"env": {"driver": "synthetic"}}, "labels": 3}
    with pytest.raises(InvalidConfig) as err:
        config.from_mapping(data)
    assert "labels: expected a table ([labels]). Received: labels=3" in str(err.value)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError) as err:
        LabelSettings(max_per_minute=-3, max_age_s=0)
    assert "labels.max_per_minute: expected an integer in [1, 60000]. Received: " in str(err.value)
    assert "labels.max_age_s: expected a positive number. Received: max_age_s=0" in str(err.value)


def test_check_config_names_the_label_keys(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(BASE.format(state=tmp_path) + BAD)
    bad = subprocess.run(
        [str(BIN / "orchard-agent"), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0
    assert "labels.max_per_minute" in bad.stderr and "labels.max_per_minit" in bad.stderr
    assert "labels.mqtt_topic" in bad.stderr


def test_the_documented_example_sets_labels(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "agent.example.toml").read_text()
    data = tomllib.loads(text)
    assert "labels" in data
    cfg = config.from_mapping({**data, "state_dir": str(tmp_path)}, "example")
    assert cfg.labels.max_per_minute == data["labels"]["max_per_minute"]
