"""The HTTP listening socket handed from one agent to the next through systemd's descriptor
store: real agent processes, the socket passed as systemd passes it ($LISTEN_FDS at fd 3)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agent.serve.server import HttpServer
from agent.serve.settings import HttpSettings
from tests.agent.serve.bundles import export
from tests.agent.serve.load import READINGS, PredictionLoad
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)
BIN = Path(sys.executable).parent


def test_inherited_fds_are_taken_out_of_the_environment() -> None:
    """In a child process: fd 3 is systemd's first passed descriptor (in this process it may be
    pytest-xdist's channel)."""
    probe = (
        "import json, os; from agent.systemd import inherited_fds; "
        "mine = {'LISTEN_PID': str(os.getpid()), 'LISTEN_FDS': '1', 'LISTEN_FDNAMES': 'http'}; "
        "other = {'LISTEN_PID': '1', 'LISTEN_FDS': '1', 'LISTEN_FDNAMES': 'http'}; "
        "print(json.dumps([inherited_fds(mine), mine, inherited_fds(other), other]))"
    )
    r, w = os.pipe()
    wrapper = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execv(sys.argv[2], sys.argv[2:])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", wrapper, str(r), sys.executable, "-c", probe],
            pass_fds=(r,), capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
    finally:
        os.close(r)
        os.close(w)
    import json

    assert json.loads(done.stdout) == [{"http": 3}, {}, {}, {}]


def test_a_socket_bound_elsewhere_is_not_taken(tmp_path: Path) -> None:
    """After a remote change of [http] port the passed socket is the old address: bind anew."""
    old = socket.socket()
    old.bind(("127.0.0.1", 0))
    old.listen()
    old_port = old.getsockname()[1]

    async def app(scope: object, receive: object, send: object) -> None:  # never called
        raise AssertionError

    server = HttpServer(app, HttpSettings(port=0))
    try:
        server.start(sock=old)
        assert not server.inherited and server.port != old_port
        assert old.fileno() == -1  # closed: the process does not keep the old address
    finally:
        server.stop()


def _agent(tmp_path: Path, sock: socket.socket, log: Path) -> subprocess.Popen[bytes]:
    """``orchard-agent run`` given ``sock`` as systemd gives a stored descriptor."""
    fd = sock.fileno()
    as_systemd = (  # fd 3, and LISTEN_PID naming the process that runs the agent (exec keeps it)
        "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); fd != 3 and os.close(fd); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='http'); "
        "os.execv(sys.argv[2], sys.argv[2:])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", as_systemd, str(fd), str(BIN / "orchard-agent"), "run",
         "-c", str(tmp_path / "agent.toml")],
        pass_fds=(fd,),
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_a_request_sent_between_two_agents_waits_for_the_second(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    _config(tmp_path, port)
    url = f"http://127.0.0.1:{port}/api/predict"
    log = tmp_path / "agent.log"
    first = _agent(tmp_path, sock, log)
    try:
        wait_until(lambda: _answers(url), 60, "the first agent serving", every=0.05)
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, log.read_text()[-2000:]
        # No agent runs: the request is not refused, it waits in the socket's backlog.
        answer: list[int] = []
        client = threading.Thread(
            target=lambda: answer.append(
                httpx.post(url, json={"readings": READINGS}, timeout=60).status_code
            )
        )
        client.start()
        second = _agent(tmp_path, sock, log)
        try:
            client.join(60)
            assert answer == [200], log.read_text()[-2000:]
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        sock.close()


class Systemd:
    """The agent's ``$NOTIFY_SOCKET``: what it tells systemd (READY, MAINPID, FDSTORE)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = path
        self.messages: list[str] = []

    def received(self) -> list[str]:
        while True:
            try:
                data, _, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(64))
            except TimeoutError:
                return self.messages
            self.messages.append(data.decode())


def _config(tmp_path: Path, port: int) -> Path:
    state = tmp_path / "state"
    inbox = state / "models" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        export(inbox.parent / "bundles", "mlp", "classify", "float32", "7"), inbox / ".m"
    )
    (inbox / ".m").rename(inbox / "m")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "h-1"\nstate_dir = "{state}"\n'
        '[sensors.room]\ndriver = "synthetic"\ninterval_s = 5\n'
        f'[http]\nhost = "127.0.0.1"\nport = {port}\n'
    )
    return config


@dataclass
class Launched:
    """One ``orchard-agent run`` under a stand-in systemd (its notify socket)."""

    proc: subprocess.Popen[bytes]
    systemd: Systemd
    config: Path
    log: Path
    url: str


def _launch(tmp_path: Path) -> Launched:
    from tests.brokers import free_port

    port = free_port()
    config = _config(tmp_path, port)
    systemd = Systemd(tmp_path / "notify.sock")
    log = tmp_path / "agent.log"
    proc = subprocess.Popen(
        [str(BIN / "orchard-agent"), "run", "-c", str(config)],
        env={**os.environ, "NOTIFY_SOCKET": str(systemd.path)},
        stdout=open(log, "ab"),  # noqa: SIM115 - the child's
        stderr=subprocess.STDOUT,
    )
    return Launched(proc, systemd, config, log, f"http://127.0.0.1:{port}/api/predict")


@pytest.mark.slow
def test_sigusr2_hands_over_to_a_new_agent_without_a_failed_request(tmp_path: Path) -> None:
    launched = _launch(tmp_path)
    first, systemd, log, url = launched.proc, launched.systemd, launched.log, launched.url
    try:
        wait_until(lambda: any("READY=1" in m for m in systemd.received()), 60, "READY")
        wait_until(lambda: _answers(url), 60, "predictions from the first agent")
        load = PredictionLoad(url, timeout_s=30, pause_s=0.02)
        first.send_signal(signal.SIGUSR2)
        assert first.wait(60) == 0, log.read_text()[-3000:]
        mainpid = [m for m in systemd.received() if m.startswith("MAINPID=")]
        assert len(mainpid) == 1, systemd.messages
        second = int(mainpid[0].split("=")[1])
        wait_until(
            lambda: log.read_text().count("agent h-1 serving") >= 2, 60, "the second agent ready"
        )
        os.kill(second, 0)  # it runs
        assert _answers(url)
        unanswered = load.close()
        assert load.failed == 0
        assert unanswered < 5.0, unanswered  # x86: well under a second; a bound, not the figure
        assert "handover: agent" in log.read_text()
        # Both agents logged predictions for a moment: the successor's ids start further on.
        assert "prediction log: write failed" not in log.read_text()
    finally:
        first.kill() if first.poll() is None else None
        for m in systemd.received():
            if m.startswith("MAINPID="):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(m.split("=")[1]), signal.SIGTERM)


@pytest.mark.slow
def test_a_successor_that_cannot_start_leaves_the_agent_serving(tmp_path: Path) -> None:
    launched = _launch(tmp_path)
    agent, systemd, config, url = launched.proc, launched.systemd, launched.config, launched.url
    try:
        wait_until(lambda: _answers(url), 60, "predictions")
        good = config.read_text()
        config.write_text(good + "[http]\n")  # the next agent refuses this file (exit 78)
        load = PredictionLoad(url, timeout_s=30, pause_s=0.02)
        agent.send_signal(signal.SIGUSR2)
        failed = tmp_path / "state" / "handover-failed"
        wait_until(failed.exists, 60, "the failed handover recorded")
        assert "status 78" in failed.read_text()
        assert agent.poll() is None and _answers(url)
        assert load.close() < 5.0 and load.failed == 0
        assert not any(m.startswith("MAINPID=") for m in systemd.received())
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.post(url, json={"readings": READINGS}, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
