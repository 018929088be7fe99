"""The agent SIGKILLed at every step of a model swap: after a restart it serves the old model
or the new one, never a part of either (tests/agent/test_slots.py kills a bare ModelSlots
child; here the killed process and the one that must serve afterwards are the real agent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.serve.bundles import Bundles, bundles
from tests.faults.agent_scenarios import run_swap_kills, swap_steps

__all__ = ["bundles"]  # the session fixture, shared with tests/agent/serve


def test_every_swap_step_is_named_and_only_the_last_activates(
    tmp_path: Path, bundles: Bundles
) -> None:
    steps = swap_steps(tmp_path, bundles("mlp", "classify", "float32", "1"), bundles())
    names = [name for name, _ in steps]
    assert len(names) == len(set(names)) >= 7, names
    activated = [name for name, after in steps if after]
    assert activated == [names[-1]], f"ACTIVE changed before the last step: {steps}"


@pytest.mark.slow
def test_sigkill_at_every_swap_step_then_the_agent_serves_old_or_new(
    tmp_path: Path, bundles: Bundles
) -> None:
    old = bundles("mlp", "classify", "float32", "1")
    new = bundles("mlp", "classify", "int8", "2")
    figures = run_swap_kills(tmp_path, old=old, new=new)
    assert figures["killed_at"] == figures["steps"]  # every step, in order
    assert figures["restarts"] == figures["kills"] + 1
