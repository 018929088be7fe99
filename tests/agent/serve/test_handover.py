"""The HTTP listening socket handed from one agent to the next through systemd's descriptor
store: real agent processes, the socket passed as systemd passes it ($LISTEN_FDS at fd 3)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from agent.serve.server import HttpServer
from agent.serve.settings import HttpSettings
from agent.systemd import inherited_fds
from tests.agent.serve.bundles import export
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)
BIN = Path(sys.executable).parent
READINGS = {"temp_c": 22.4, "humidity_pct": 46, "pressure_hpa": 1015, "light_lux": 460,
            "co2_ppm": 900}  # fmt: skip


def test_inherited_fds_are_taken_out_of_the_environment() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"}
    r, w = os.pipe()
    os.dup2(r, 3) if r != 3 else None
    try:
        assert inherited_fds(env) == {"http": 3} and env == {}
        other = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"}
        assert inherited_fds(other) == {} and other == {}  # meant for another process
    finally:
        os.close(w)
        os.close(r)


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
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.close(int(sys.argv[1])); "
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
    state = tmp_path / "state"
    inbox = state / "models" / "inbox"
    inbox.mkdir(parents=True)
    export(inbox, "mlp", "classify", "float32", "7").rename(inbox / "m")
    (tmp_path / "agent.toml").write_text(
        f'device_id = "h-1"\nstate_dir = "{state}"\n'
        '[sensors.room]\ndriver = "synthetic"\ninterval_s = 5\n'
        f'[http]\nhost = "127.0.0.1"\nport = {port}\n'
    )
    url = f"http://127.0.0.1:{port}/api/predict"
    log = tmp_path / "agent.log"

    def serving() -> bool:
        try:
            return httpx.post(url, json={"readings": READINGS}, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    first = _agent(tmp_path, sock, log)
    try:
        wait_until(serving, 60, "the first agent serving", every=0.05)
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
