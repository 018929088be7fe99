"""Fixtures of the fuzz tests: exported bundles (session) and a real agent serving one."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.agent.serve.bundles import Bundles, bundles
from tests.fuzz.agent_process import AgentProcess

__all__ = ["FUZZ", "bundles", "fuzz"]

# Reproducible in CI: derandomized (the seed comes from each test's source), no example database
# carried between runs, no per-example deadline (CI machines are shared and slow).
# ORCHARD_FUZZ_DEEP=N runs N times the examples with fresh random seeds (a local deep run).
DEEP = int(os.environ.get("ORCHARD_FUZZ_DEEP", "0") or 0)
FUZZ = settings(
    derandomize=not DEEP,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def fuzz(max_examples: int) -> settings:
    """The suite's settings with ``max_examples`` (times ``ORCHARD_FUZZ_DEEP`` in a deep run)."""
    return settings(FUZZ, max_examples=max_examples * max(DEEP, 1))


@pytest.fixture(scope="module")
def serving_agent(
    tmp_path_factory: pytest.TempPathFactory, bundles: Bundles
) -> Iterator[AgentProcess]:
    """``orchard-agent run`` with a token, serving the room classifier (version 1) from slot-a."""
    agent = AgentProcess(tmp_path_factory.mktemp("agent")).start()
    try:
        info = agent.install(bundles("mlp", "classify", "float32", "1"), "rooms-1")
        assert info["version"] == "1", agent.log()
        yield agent
    finally:
        agent.stop()
