"""Suite-wide fixtures: real MQTT brokers (tests/brokers.py)."""

import pytest

pytest_plugins = ["tests.brokers"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``fleet`` share one pytest-xdist group, so with ``-n 2`` (scripts/test.sh)
    they run one after another on one worker: each starts TensorFlow trainers and Flower
    processes that need the machine's cores, while the rest of the suite fills the other."""
    for item in items:
        if item.get_closest_marker("fleet"):
            item.add_marker(pytest.mark.xdist_group("fleet"))
