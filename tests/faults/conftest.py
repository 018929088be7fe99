"""Fixtures for the fault suite: a two-device federation shared by a test module.

The agents serve a model exported once in this process (tests/agent/serve/bundles.py), so
predictions can be checked while the federation around them fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent.serve.bundles import export
from tests.faults.net_scenarios import FedFleet, fed_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FedFleet]:
    """A SuperLink and two ``orchard-agent run`` devices; the second has ``max_seconds`` 30."""
    work = tmp_path_factory.mktemp("faults-fl")
    bundle = export(work / "bundles")
    with fed_fleet(work, bundle, devices=2, victim_max_seconds=30.0) as running:
        yield running
