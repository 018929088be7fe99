"""A client posting predictions from another thread until stopped: when each answer came, and
when each request failed. Used by the handover tests and benchmarks/restart_downtime.py."""

from __future__ import annotations

import threading
import time

import httpx

READINGS = {"temp_c": 22.4, "humidity_pct": 46, "pressure_hpa": 1015, "light_lux": 460,
            "co2_ppm": 900}  # fmt: skip


class PredictionLoad:
    def __init__(self, url: str, *, timeout_s: float = 15.0, pause_s: float = 0.0) -> None:
        self.url, self.timeout_s, self.pause_s = url, timeout_s, pause_s
        self.answers: list[float] = []
        self.failures: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def failed(self) -> int:
        return len(self.failures)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self.stop.is_set():
                try:
                    ok = client.post(self.url, json={"readings": READINGS}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                (self.answers if ok else self.failures).append(time.monotonic())
                pause = self.pause_s if ok else max(self.pause_s, 0.01)
                if pause:
                    self.stop.wait(pause)

    def close(self) -> float:
        """Stop; the longest time between two answers."""
        self.stop.set()
        self.thread.join(30)
        return max(b - a for a, b in zip(self.answers, self.answers[1:], strict=False))
