"""The dashboard page in headless Chromium: the models view and the charts' axes.

The page is the real one (coordinator/dashboard/static) on the real dashboard app over a real
registry and run history; only ``/api/models`` comes from a small app in front of it that
returns a fixed document (a canary being rolled back, with a reason that tries to inject
markup). Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``):
the test waits on conditions in the live page, not on a time budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException

from coordinator.dashboard.app import create_app
from coordinator.dashboard.runs import read_history
from coordinator.dashboard.server import DashboardServer
from coordinator.health.registry import Registry
from tests.coordinator.health.helpers import birth, health, status
from tests.waiting import wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)

DEVICES = ["pi-a", "pi-b", "pi-c"]
ODD_ID = "pi-<b>d</b>"  # a device id that is markup
REASON = (
    "canary error rate 25.0% > control 2.0% (max +5 points) "
    '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
)
STARTED = 1_700_000_000.0


def models_document(now: float) -> dict[str, Any]:
    """``GET /api/models``: v8 on a canary of two, being rolled back by the coordinator."""
    return {
        "rollout": {
            "id": 3,
            "run_id": "run-7",
            "round": 5,
            "version": "run-7.5",
            "previous": "run-7.4",
            "stage": "canary",
            "started": STARTED,
            "soak_s": 600,
            "soak_ends": now + 250,
            "min_labels": 30,
            "canary": ["pi-a", ODD_ID],
            "control": ["pi-b", "pi-c"],
            "decision": {"outcome": "rollback", "reason": REASON, "at": now, "by": "auto"},
            "comparison": {
                "canary": {
                    "devices": 2,
                    "reporting": 2,
                    "predictions": 400,
                    "errors": 100,
                    "error_rate": 0.25,
                    "p99_ms": 4.25,
                    "mean_confidence": 0.6123,
                    "labelled": 40,
                    "accuracy": 0.55,
                    "mae": None,
                },
                "control": {
                    "devices": 2,
                    "reporting": 1,
                    "predictions": 500,
                    "errors": 10,
                    "error_rate": 0.02,
                    "p99_ms": 1.5,
                    "mean_confidence": 0.9,
                    "labelled": 35,
                    "accuracy": 0.914,
                    "mae": None,
                },
            },
        },
        "devices": [
            {
                "device_id": "pi-a",
                "online": True,
                "serving": "run-7.5",
                "desired": "run-7.5",
                "delivery": "installed",
                "delivery_error": None,
                "group": "canary",
            },
            {
                "device_id": ODD_ID,
                "online": False,
                "serving": "run-7.4",
                "desired": "run-7.5",
                "delivery": "failed",
                "delivery_error": "sha256 mismatch",
                "group": "canary",
            },
            {
                "device_id": "pi-b",
                "online": True,
                "serving": "run-7.4",
                "desired": "run-7.4",
                "delivery": "installed",
                "delivery_error": None,
                "group": "control",
            },
            {
                "device_id": "pi-c",
                "online": True,
                "serving": "run-7.4",
                "desired": None,
                "delivery": None,
                "delivery_error": None,
                "group": None,
            },
        ],
        "versions": [
            {
                "version": "run-7.4",
                "devices": 3,
                "predictions": 500,
                "errors": 10,
                "p50_ms": 0.8,
                "p99_ms": 1.5,
                "mean_confidence": 0.9,
                "drift_psi": None,
                "labelled": 35,
                "accuracy": 0.914,
                "mae": None,
            },
            {
                "version": "run-7.5",
                "devices": 1,
                "predictions": 400,
                "errors": 100,
                "p50_ms": 2.0,
                "p99_ms": 4.25,
                "mean_confidence": 0.6123,
                "drift_psi": 0.31,
                "labelled": 40,
                "accuracy": 0.55,
                "mae": None,
            },
        ],
        "history": [
            {
                "id": 2,
                "version": "run-6.3",
                "previous": "run-5.9",
                "stage": "promoted",
                "decision": {"outcome": "promote", "reason": "canary within thresholds"},
                "started": STARTED - 7200,
                "finished": STARTED - 6600,
            },
            {
                "id": 1,
                "version": "run-5.9",
                "previous": None,
                "stage": "aborted",
                "decision": "abort",
                "started": STARTED - 86400,
                "finished": None,
            },
        ],
    }


def history_document() -> dict[str, Any]:
    """A run as the ServerApp writes it: the declared metric keys, counts and flags included."""
    train = {"num-examples": 120.0, "loss": 0.9, "metric": 0.6, "val_loss": 1.0}
    train |= {"val_metric": 0.55, "duration_s": 4.0, "peak_rss_mb": 300.0}
    evaluate = {"num-examples": 60.0, "loss": 1.0, "metric": 0.55, "personal_loss": 1.0}
    evaluate |= {"personal_metric": 0.55, "personalized": 0.0, "installed": 1.0}
    central = {"loss": 0.95, "metric": 0.58, "examples": 200.0}
    rounds = [
        {
            "round": n,
            "train": {k: v / n for k, v in train.items()},
            "evaluate": {k: v / n for k, v in evaluate.items()},
            "central": central,
            "selected": ["1", "2"],
            "skipped": {},
            "failures": 0,
            "duration_s": 4.0,
            "bytes_sent": 1000 * n,
        }
        for n in (1, 2, 3)
    ]
    return {"run_id": "run-7", "model": {"spec": {"task": "classify"}}, "rounds": rounds}


# -- Chromium over the DevTools protocol ----------------------------------------------------


class Chromium:
    """Headless Chromium speaking the DevTools protocol on a pipe (its fds 3 and 4)."""

    def __init__(self, binary: str, profile: Path) -> None:
        commands_r, self._commands = os.pipe()  # Chromium reads commands on its fd 3
        self._replies, replies_w = os.pipe()  # and writes replies, NUL-terminated, on fd 4
        # Above 9 so the redirections below cannot clobber each other (bash: fds > 9 are fine).
        theirs = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_r, replies_w)]
        os.close(commands_r)
        os.close(replies_w)
        self.log = profile.with_suffix(".log")
        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
        ]
        redirect = f"3<&{theirs[0]} 4>&{theirs[1]} {theirs[0]}<&- {theirs[1]}>&-"
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" {redirect}', binary, *args],
                pass_fds=theirs,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        for fd in theirs:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and return its result (events in between are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._commands, data) :]
        while True:
            reply = self._receive(timeout=30.0)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    def _receive(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], deadline - time.monotonic())
            chunk = os.read(self._replies, 1 << 16) if ready else None
            if not chunk:
                why = "exited" if chunk == b"" else f"did not answer within {timeout:g} s"
                tail = self.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"chromium {why}; its log ends:\n{tail}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    def open(self, url: str) -> Page:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        return Page(self, target, attached["sessionId"])

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):  # it may be gone already
            self.call("Browser.close")
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        os.close(self._commands)
        os.close(self._replies)


class Page:
    """One tab, evaluated in and waited on through its DevTools session."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser, self.target, self.session = browser, target, session

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})

    def js(self, expression: str) -> Any:
        """The value of ``expression`` in the page (JSON-serialisable values only)."""
        out = self.browser.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True},
            session=self.session,
        )
        if "exceptionDetails" in out:
            raise AssertionError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 20.0) -> Any:
        return wait_until(lambda: self.js(expression), timeout, what=what, every=0.05)

    def table(self, selector: str) -> list[list[str]]:
        """The text of each body cell of a table, row by row."""
        return self.js(
            f"[...document.querySelectorAll({json.dumps(selector + ' tbody tr')})]"
            ".map(tr => [...tr.cells].map(c => c.textContent))"
        )


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    assert CHROMIUM is not None
    browser = Chromium(CHROMIUM, tmp_path_factory.mktemp("chromium") / "profile")
    yield browser
    browser.close()


@pytest.fixture
def browse(chromium: Chromium) -> Iterator[Callable[[str], Page]]:
    """Open a tab on a URL; the tabs close when the test ends (they would keep polling)."""
    pages: list[Page] = []

    def open_(url: str) -> Page:
        pages.append(chromium.open(url))
        return pages[-1]

    yield open_
    for page in pages:
        page.close()


# -- the dashboard under test ----------------------------------------------------------------


class Dashboard:
    """The real dashboard app behind one that answers ``/api/models`` with ``self.models``."""

    def __init__(self, tmp_path: Path) -> None:
        self.now = time.time()
        self.models: dict[str, Any] | None = models_document(self.now)
        self.registry = Registry(tmp_path / "registry.sqlite")
        for i, name in enumerate(DEVICES):
            self.registry.record(name, None, status("ready"))
            self.registry.record(name, None, birth(name))
            for seq in range(4):
                point = health(seq=seq, ts=self.now - 90 + 30 * seq, temp=45.0 + i + seq)
                self.registry.record(name, None, point, received_at=point.ts)
        runs = tmp_path / "runs"
        (runs / "run-7").mkdir(parents=True)
        (runs / "run-7" / "history.json").write_text(json.dumps(history_document()))

        front = FastAPI()

        @front.get("/api/models")
        def models() -> dict[str, Any]:
            if self.models is None:
                raise HTTPException(404, "Not Found")  # a coordinator from before rollouts
            return self.models

        front.mount("/", create_app(self.registry, runs_dir=runs))
        self.server = DashboardServer(front, port=0)

    def close(self) -> None:
        self.server.stop()
        self.registry.close()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    board = Dashboard(tmp_path)
    board.server.start()
    yield board
    board.close()


def assert_time_left(text: str, dashboard: Dashboard) -> None:
    """``text`` ("in 4m 10s") counts down to the soak's end, 250 s after the document's now."""
    minutes, seconds = (int(n) for n in re.findall(r"\d+", text))
    expected = 250 - (time.time() - dashboard.now)
    assert expected - 2 <= 60 * minutes + seconds <= 250, (text, expected)


# -- tests ---------------------------------------------------------------------------------------


def test_training_charts_are_the_metrics_labelled_by_task(tmp_path: Path) -> None:
    path = tmp_path / "run-7" / "history.json"
    path.parent.mkdir()
    doc = history_document()
    path.write_text(json.dumps(doc))
    charts = {c["key"]: c for c in read_history(path)["charts"]}
    assert list(charts) == [
        "loss",
        "metric",
        "val_loss",
        "val_metric",
        "personal_loss",
        "personal_metric",
        "duration_s",
        "peak_rss_mb",
    ]  # not num-examples, examples, installed, personalized
    assert charts["metric"] == {"key": "metric", "title": "Accuracy", "y_label": "accuracy (0-1)"}
    assert charts["duration_s"]["y_label"] == "time (s)"
    for task, label in (("regress", "MAE (target units)"), (None, "accuracy (0-1) or MAE")):
        doc["model"] = {"spec": {"task": task}}
        path.write_text(json.dumps(doc))
        assert {c["key"]: c for c in read_history(path)["charts"]}["metric"]["y_label"] == label
    doc["model"] = {"spec": {"task": "anomaly"}}  # its metric is the loss again
    path.write_text(json.dumps(doc))
    assert "metric" not in {c["key"] for c in read_history(path)["charts"]}


@pytest.mark.slow
@needs_chromium
def test_models_view_shows_the_rollout_its_decision_and_the_comparison(
    browse: Callable[[str], Page], dashboard: Dashboard
) -> None:
    page = browse(dashboard.server.url)
    page.wait_for(
        "document.getElementById('rollout-stage')?.textContent === 'canary'", "the rollout stage"
    )
    title = page.js("document.querySelector('.rollout-title').textContent")
    assert title == "canary run-7.5 replacing run-7.4 — rollout 3, run run-7 round 5"

    # The reason is shown as text: nothing it contains became an element or ran.
    assert page.js("document.getElementById('rollout-reason').textContent") == REASON
    decision = page.js("document.getElementById('rollout-decision').textContent")
    assert decision.startswith("Decision: rollback (automatic, ")
    assert page.js("document.querySelectorAll('#models-view script, #models-view img').length") == 0
    assert page.js("document.querySelectorAll('script').length") == 1  # app.js
    assert page.js("typeof window.__pwned") == "undefined"

    # Version per device, the odd id as text.
    assert page.table("#model-devices") == [
        ["pi-a", "canary", "run-7.5", "run-7.5", "installed", "yes"],
        [ODD_ID, "canary", "run-7.4", "run-7.5", "failed (sha256 mismatch)", "no"],
        ["pi-b", "control", "run-7.4", "run-7.4", "installed", "yes"],
        ["pi-c", "—", "run-7.4", "—", "—", "yes"],
    ]
    assert page.js("document.querySelectorAll('#model-devices b').length") == 0
    assert page.js("document.querySelectorAll('#model-devices tr.pending').length") == 1

    # Canary vs control, metric by metric; null is "—".
    comparison = {row[0]: row[1:] for row in page.table("#rollout-comparison")}
    assert comparison == {
        "devices": ["2", "2"],
        "reporting": ["2", "1"],
        "predictions": ["400", "500"],
        "errors": ["100", "10"],
        "error rate (%)": ["25.0", "2.0"],
        "latency p99 (ms)": ["4.3", "1.5"],
        "mean confidence (0-1)": ["0.612", "0.900"],
        "labelled predictions": ["40", "35"],
        "accuracy (0-1)": ["0.550", "0.914"],
        "MAE": ["—", "—"],
    }
    heads = "[...document.querySelectorAll('#rollout-comparison thead th')].map(t => t.textContent)"
    assert page.js(heads) == ["metric", "canary (run-7.5)", "control (run-7.4)"]

    # Live metrics per version, side by side.
    heads = "[...document.querySelectorAll('#model-versions thead th')].map(t => t.textContent)"
    assert page.js(heads) == ["metric", "run-7.4 (previous)", "run-7.5 (canary)"]
    versions = {row[0]: row[1:] for row in page.table("#model-versions")}
    assert versions["predictions"] == ["500", "400"]
    assert versions["latency p50 (ms)"] == ["0.8", "2.0"]
    assert versions["drift vs previous (PSI)"] == ["—", "0.310"]
    assert versions["accuracy (0-1)"] == ["0.914", "0.550"]

    # The soak: its end in local time (exact instant in datetime) and a live countdown.
    facts = page.js(
        "Object.fromEntries([...document.querySelectorAll('.facts dt')]"
        ".map(dt => [dt.textContent, dt.nextElementSibling.textContent]))"
    )
    left = re.fullmatch(r"10m 0s, ends .+ \((in \d+m \d+s)\)", facts["soak"])
    assert left is not None, facts["soak"]
    assert_time_left(left[1], dashboard)
    assert facts["canary"] == f"2 device(s): pi-a, {ODD_ID}"
    assert facts["control"] == "2 device(s): pi-b, pi-c"
    assert facts["min labels"] == "30"
    started = page.js("document.querySelector('.facts time').getAttribute('datetime')")
    assert started == datetime.fromtimestamp(STARTED, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    # Past rollouts.
    past = page.table("#rollout-history")
    assert [row[:5] for row in past] == [
        ["2", "run-6.3", "run-5.9", "promoted", "promote: canary within thresholds"],
        ["1", "run-5.9", "—", "aborted", "abort"],
    ]
    assert past[1][6] == "—"  # not finished
    # Nothing on the page failed.
    assert page.js("document.getElementById('models-error').textContent") == ""
    assert page.js("document.getElementById('run-error').textContent") == ""
    assert page.js("document.getElementById('updated').textContent").startswith("updated ")


@pytest.mark.slow
@needs_chromium
def test_a_canary_still_soaking_shows_no_decision_and_the_time_left(
    browse: Callable[[str], Page], dashboard: Dashboard
) -> None:
    assert dashboard.models is not None
    dashboard.models["rollout"]["decision"] = None
    page = browse(dashboard.server.url)
    decision = page.wait_for(
        "document.getElementById('rollout-decision')?.textContent", "the rollout's decision"
    )
    left = re.fullmatch(r"No decision yet — soak end: (in \d+m \d+s)", decision)
    assert left is not None, decision
    assert_time_left(left[1], dashboard)
    assert page.js("document.getElementById('rollout-reason')") is None


@pytest.mark.slow
@needs_chromium
def test_models_view_on_a_coordinator_without_the_endpoint(
    browse: Callable[[str], Page], dashboard: Dashboard
) -> None:
    dashboard.models = None
    page = browse(dashboard.server.url)
    page.wait_for(
        "document.getElementById('rollout')?.textContent === 'no rollouts yet'", "no rollouts yet"
    )
    assert page.table("#rollout-history") == [["no rollouts yet"]]
    assert page.js("document.getElementById('models-error').textContent") == ""
    # The rest of the page still works.
    page.wait_for("document.querySelectorAll('#devices tr[data-device]').length === 3", "fleet")
    # Once the coordinator has rollouts, none of them current, the next poll says so.
    past = models_document(dashboard.now)["history"]
    dashboard.models = {"rollout": None, "devices": [], "versions": [], "history": past}
    page.wait_for(
        "document.getElementById('rollout').textContent === 'no rollout in progress'",
        "no rollout in progress",
    )
    assert [row[1] for row in page.table("#rollout-history")] == ["run-6.3", "run-5.9"]


@pytest.mark.slow
@needs_chromium
def test_every_chart_has_axis_labels_and_no_internal_field_is_charted(
    browse: Callable[[str], Page], dashboard: Dashboard
) -> None:
    page = browse(dashboard.server.url)
    page.wait_for("document.querySelectorAll('#run-charts .chart').length > 0", "training charts")
    page.wait_for("document.querySelector('#devices tr[data-device]') !== null", "the fleet table")
    page.js("document.querySelector('#devices tr[data-device]').click()")
    page.wait_for(
        "document.querySelectorAll('#detail-charts .chart').length === 4", "device charts"
    )
    charts = page.js(
        "[...document.querySelectorAll('.chart')].map(c => ({"
        " section: c.closest('section').id, title: c.querySelector('h3').textContent,"
        " x: c.querySelector('svg .axis-x')?.textContent,"
        " y: c.querySelector('svg .axis-y')?.textContent,"
        " lines: c.querySelectorAll('polyline').length}))"
    )
    training = {c["title"]: c for c in charts if c["section"] == "training"}
    device = {c["title"]: c for c in charts if c["section"] == "detail"}
    assert list(training) == [
        "Loss",
        "Accuracy",
        "Loss, local validation",
        "Accuracy, local validation",
        "Loss, personalised model",
        "Accuracy, personalised model",
        "Training time per device",
        "Trainer peak memory",
    ]  # no num-examples, examples, installed, personalized
    assert {c["x"] for c in training.values()} == {"round"}
    assert training["Loss"]["y"] == "loss" and training["Loss"]["lines"] == 3
    assert training["Accuracy"]["y"] == "accuracy (0-1)"
    assert training["Training time per device"]["y"] == "time (s)"
    assert training["Trainer peak memory"]["y"] == "memory (MB)"
    assert {c["x"] for c in device.values()} == {"time (local)"}
    assert {title: c["y"] for title, c in device.items()} == {
        "CPU temperature": "°C",
        "CPU and memory use": "% used",
        "Agent memory (RSS)": "MB",
        "Inference p95 latency": "ms",
    }
    assert all(c["lines"] >= 1 for c in device.values())
    # x ticks are times of day, not raw timestamps
    ticks = page.js(
        "[...document.querySelectorAll('#detail-charts .chart:first-child text.tick')]"
        ".map(t => t.textContent)"
    )
    assert not any(re.fullmatch(r"1\.\d+e\+9|\d{10}", t) for t in ticks), ticks
    # Sparklines: too small for axes; the column header and their title name both.
    sparks = page.js("[...document.querySelectorAll('svg.spark title')].map(t => t.textContent)")
    assert sparks == ["CPU temperature (°C), last 4 reports"] * 3
    assert "last 30 reports (°C)" in page.js(
        "document.querySelector('#fleet-table thead').textContent"
    )
    # Every svg on the page is one of the two kinds above.
    assert page.js("document.querySelectorAll('svg').length") == len(charts) + len(sparks)
