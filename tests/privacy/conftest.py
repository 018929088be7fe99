"""Fixtures for the privacy tests."""

from __future__ import annotations

import pytest
from flwr.supercore.task_identity import TaskIdentity

from tests.privacy.inprocess import RUN_ID


@pytest.fixture
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower builds messages from the process's task identity; give the test process one."""
    for name, value in (("_run_id", RUN_ID), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)
