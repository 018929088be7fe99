"""Suite-wide fixtures: real MQTT brokers (tests/brokers.py)."""

pytest_plugins = ["tests.brokers"]
