"""Shared fixtures: a controllable clock; brokers come from tests/brokers.py (``mosquitto``)."""

from __future__ import annotations

import pytest

from tests.brokers import Broker, free_port
from tests.fakes import FakeClock

__all__ = ["Broker", "FakeClock", "free_port"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
