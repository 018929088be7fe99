"""Small test helpers: bounded polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(produce: Callable[[], T | None], timeout: float = 10.0, every: float = 0.02) -> T:
    """Call ``produce`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    idle = threading.Event()
    while True:
        value = produce()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"nothing after {timeout} s")
        idle.wait(every)
