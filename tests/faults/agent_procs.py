"""Processes for the agent-local fault scenarios: children, their output, the agent itself.

    child(role, ...)      ``python -m MODULE ROLE ARGS``; MODULE names its roles (see :func:`main`)
    Output(proc)          a child's output, read in a thread, lines awaited with a deadline
    Agent(config, port)   ``orchard-agent run`` (or the ``agent`` role: plugin drivers added)
    wait_until(check, ...)  from tests.waiting: poll; a timeout is a broken promise

The ``agent`` role is ``orchard-agent``'s own ``main`` with two plugin drivers registered
(``hang`` and ``boom``) and, with ``--kill-at STEP``, a SIGKILL at one step of ``ModelSlots``.
Helpers from elsewhere in the suite are imported where used, so the children stay light.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.errors import SensorError
from agent.sensors.base import Clock, DriverBase, Feature
from agent.types import Reading
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
AGENT_BIN = Path(sys.executable).parent / "orchard-agent"
MODULE = "tests.faults.agent_procs"  # the module the ``agent`` role runs from
Role = Callable[[list[str]], None]


# -- plumbing ----------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def child(role: str, *args: str, module: str = MODULE, **popen: Any) -> subprocess.Popen[str]:
    """``python -m MODULE ROLE ARGS`` with merged, line-read output."""
    return subprocess.Popen(
        [sys.executable, "-m", module, role, *args],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


class Output:
    """Reads a child's output in a thread (its pipe never fills); lines can be awaited."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        """Until the child's output has been read to its end (or ``timeout`` passes)."""
        self._thread.join(timeout)

    def matching(self, needle: str) -> list[str]:
        with self._cond:
            return [line for line in self.lines if needle in line]

    def next_after(self, index: int, timeout: float) -> tuple[int, str | None]:
        """The line at ``index`` once it exists, or None at EOF; fails past the deadline."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.lines) > index or self.closed, timeout)
            if not ok:
                raise AssertionError(f"no output line {index} within {timeout} s")
            return (index + 1, self.lines[index]) if len(self.lines) > index else (index, None)

    def wait_for(self, needle: str, timeout: float) -> str:
        with self._cond:
            self._cond.wait_for(lambda: any(needle in ln for ln in self.lines), timeout)
        found = self.matching(needle)
        if not found:
            raise AssertionError(f"no {needle!r} in the output within {timeout} s:\n{self.tail()}")
        return found[0]

    def tail(self, n: int = 30) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])


def stop_process(proc: subprocess.Popen[str], timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL past the deadline; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout)


def export_bundles(workdir: Path) -> tuple[Path, Path]:
    """Two model bundles under ``workdir``: version 1 (float32) and version 2 (int8)."""
    from tests.agent.serve.bundles import export

    root = workdir / "bundles"
    root.mkdir(parents=True, exist_ok=True)
    return export(root, "mlp", "classify", "float32", "1"), export(
        root, "mlp", "classify", "int8", "2"
    )


# -- the agent as a process --------------------------------------------------------------------

SYNTHETIC = '[sensors.env]\ndriver = "synthetic"\ninterval_s = 0.05\n'


def agent_config(home: Path, sensors: str = SYNTHETIC, extra: str = "") -> tuple[Path, int]:
    """An ``agent.toml`` with everything under ``home``; returns it and its HTTP port."""
    from tests.brokers import free_port

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    path = home / "agent.toml"
    path.write_text(
        f'device_id = "fault-pi"\nstate_dir = "{home / "state"}"\n{sensors}'
        f"[http]\nport = {port}\n{extra}"
    )
    return path, port


class Agent:
    """``orchard-agent run`` (or the ``agent`` role: same ``main``, plugin drivers added)."""

    def __init__(
        self,
        config: Path,
        port: int,
        *,
        plugins: bool = True,
        kill_at: str | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        import httpx

        args = ["run", "--config", str(config)]
        if plugins:
            extra = ["--kill-at", kill_at] if kill_at else []
            self.proc = child("agent", *extra, *args, preexec_fn=preexec_fn)
        else:
            self.proc = subprocess.Popen(
                [str(AGENT_BIN), *args],
                env=child_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                preexec_fn=preexec_fn,
            )
        self.out = Output(self.proc)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
        self._error = httpx.HTTPError

    def get(self, path: str) -> Any:
        try:
            response = self.http.get(path)
        except self._error:
            return None
        return response if response.status_code == 200 else None

    def healthz(self) -> dict[str, Any] | None:
        response = self.get("/healthz")
        return None if response is None else dict(response.json())

    def up(self, timeout: float = 30.0, *, model: bool = False) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.out.tail()}")
            health = self.healthz()
            return health if health and (health["model_loaded"] or not model) else None

        return wait_until(ready, timeout, "the agent's /healthz")

    def predict(self, instances: Sequence[Any]) -> tuple[int, dict[str, Any]]:
        response = self.http.post("/api/predict", json={"instances": list(instances)})
        return response.status_code, dict(response.json())

    def metric(self, name: str, **labels: str) -> float:
        """One sample of ``/metrics`` (0.0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        response = self.get("/metrics")
        assert response is not None, "GET /metrics failed"
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(15)
        self.http.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# -- the agent role and its plugin drivers -------------------------------------------------------


class HangDriver(DriverBase):
    """``read()`` blocks forever in a real ``read(2)`` on a pipe nobody writes to.

    Every call appends a line to ``options["trace"]`` first, so a test can count the calls.
    """

    def __init__(self, name: str, clock: Clock, trace: str | None) -> None:
        super().__init__(name, [Feature(f"{name}_value", "")], clock)
        self._trace = trace
        self._read_end, self._write_end = os.pipe()

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, clock: Clock) -> HangDriver:
        return cls(name, clock, options.get("trace"))

    def read(self) -> list[Reading]:
        if self._trace:
            with open(self._trace, "a") as fh:
                fh.write("read\n")
        os.read(self._read_end, 1)  # never returns: the write end stays open
        raise SensorError("unreachable")


class BoomDriver(DriverBase):
    """``read()`` raises an unexpected exception, as a buggy driver would."""

    def __init__(self, name: str, clock: Clock) -> None:
        super().__init__(name, [Feature(f"{name}_value", "")], clock)

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, clock: Clock) -> BoomDriver:
        return cls(name, clock)

    def read(self) -> list[Reading]:
        raise RuntimeError(f"driver {self.name} is broken")


def _agent_role(argv: list[str]) -> None:
    """The agent with the plugin drivers; ``--kill-at STEP`` SIGKILLs it at a swap step."""
    from agent.cli import main as agent_main
    from agent.sensors import registry

    registry.register("hang", HangDriver)
    registry.register("boom", BoomDriver)
    if argv[:1] == ["--kill-at"]:
        step, argv = argv[1], argv[2:]
        from agent.slots import ModelSlots

        def die_at(self: ModelSlots, name: str) -> None:
            if name == step:
                os.kill(os.getpid(), signal.SIGKILL)

        ModelSlots._step = die_at  # type: ignore[method-assign]
    agent_main(argv)


# -- children ----------------------------------------------------------------------------------

ROLES: dict[str, Role] = {"agent": _agent_role}


def main(argv: Sequence[str], roles: Mapping[str, Role] = ROLES) -> None:
    """Run the role ``argv[0]`` names with the rest of ``argv``."""
    if not argv or argv[0] not in roles:
        raise SystemExit(f"expected a role, one of {sorted(roles)}. Received: {list(argv[:1])}")
    roles[argv[0]](list(argv[1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
