"""What the host asks the running board, through the guest agent: unit states, figures, logs."""

from __future__ import annotations

import io
import re
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.board.qemu import Boot
from tests.board.qga import GuestAgent, GuestAgentError
from tests.waiting import wait_until

AGENT = "orchard-agent.service"
FIRSTBOOT = "orchard-firstboot.service"
TRAINER_SOCKET = "orchard-trainer.socket"
TRAINER = "orchard-trainer.service"
PROPS = (
    "ActiveState",
    "SubState",
    "Result",
    "NRestarts",
    "MainPID",
    "ExecMainStatus",
    "ExecMainStartTimestampMonotonic",
    "ActiveEnterTimestampMonotonic",
    "InactiveExitTimestampMonotonic",
)


def unit(qga: GuestAgent, name: str) -> dict[str, str]:
    return units(qga, name)[0]


def units(qga: GuestAgent, *names: str) -> list[dict[str, str]]:
    """``systemctl show`` of each unit (one guest command: polling costs emulated CPU)."""
    out = qga.sh(f"systemctl show {' '.join(names)} -p {','.join(PROPS)}", timeout=60)
    blocks = [b for b in out.strip().split("\n\n")]
    return [dict(line.split("=", 1) for line in b.splitlines() if "=" in line) for b in blocks]


def journal(qga: GuestAgent, *units: str, lines: int = 200) -> str:
    flags = " ".join(f"-u {u}" for u in units)
    try:
        return qga.exec(
            f"journalctl -b --no-pager -o short-monotonic -n {lines} {flags}", timeout=120
        ).out
    except (GuestAgentError, TimeoutError, OSError) as exc:
        return f"(no journal: {exc})"


def diagnose(boot: Boot) -> str:
    """Everything worth reading when a boot went wrong."""
    parts = [f"--- console (boot {boot.index}, last lines; full: {boot.console})", boot.tail(80)]
    if boot.alive:
        try:
            parts.append("--- systemctl --failed")
            parts.append(boot.qga.exec("systemctl --failed --no-pager", timeout=60).out)
            parts.append("--- journal (orchard units)")
            parts.append(journal(boot.qga, FIRSTBOOT, AGENT, TRAINER_SOCKET))
        except (GuestAgentError, TimeoutError, OSError) as exc:
            parts.append(f"(guest agent unavailable: {exc})")
    return "\n".join(parts)


class AgentNotReady(AssertionError):
    pass


T = TypeVar("T")


def wait(boot: Boot, condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """The suite's ``wait_until`` every 2 s (each look costs emulated CPU), failing with the
    board's diagnosis."""
    try:
        return wait_until(condition, timeout, what, every=2.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(boot)}") from None


def healthz(client: httpx.Client) -> dict[str, Any]:
    """``GET /healthz`` through the host's forward."""
    doc: dict[str, Any] = client.get("/healthz").json()
    return doc


def supernode_connected(client: httpx.Client) -> bool:
    return (healthz(client).get("federation") or {}).get("supernode") == "connected"


def model_loaded(client: httpx.Client) -> bool:
    return bool(healthz(client)["model_loaded"])


def wait_agent_ready(boot: Boot, timeout: float, *, allow_restarts: bool = False) -> dict[str, str]:
    """Poll until orchard-agent.service is active (Type=notify: READY=1 was sent).

    Fails early (with the journal) when the installer failed, the agent failed, or the agent
    was restarted: a crash loop is a defect, not something to wait out.
    """
    deadline = time.monotonic() + timeout
    boot.qga.wait_up(max(1.0, deadline - time.monotonic()), alive=lambda: boot.alive)
    while True:
        if not boot.alive:
            raise AgentNotReady(f"the board stopped (QEMU rc {boot.proc.poll()})\n{diagnose(boot)}")
        try:
            agent, first = units(boot.qga, AGENT, FIRSTBOOT)
        except (GuestAgentError, TimeoutError, OSError, ValueError):
            agent, first = {}, {}
        if first.get("ActiveState") == "failed":
            raise AgentNotReady(f"{FIRSTBOOT} failed\n{diagnose(boot)}")
        if agent.get("ActiveState") == "failed":
            raise AgentNotReady(f"{AGENT} failed\n{diagnose(boot)}")
        if not allow_restarts and int(agent.get("NRestarts", "0") or 0) > 0:
            raise AgentNotReady(
                f"{AGENT} was restarted {agent['NRestarts']} times\n{diagnose(boot)}"
            )
        if agent.get("ActiveState") == "active" and agent.get("SubState") == "running":
            return agent
        if time.monotonic() > deadline:
            raise AgentNotReady(
                f"{AGENT} not ready after {timeout:.0f} s: {agent}\n{diagnose(boot)}"
            )
        time.sleep(5.0)


def push_model(qga: GuestAgent, bundle: Path, name: str) -> None:
    """Drop a model bundle into the agent's inbox as the README says: write, then rename."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for item in sorted(bundle.iterdir()):
            tar.add(item, arcname=item.name)
    inbox = "/var/lib/orchard/models/inbox"
    script = (
        f"set -e; d={inbox}; install -d -o orchard -g orchard -m 0750 /var/lib/orchard/models $d;"
        f" t=$d/.{name}.tmp; rm -rf $t; mkdir $t; tar -x -C $t --no-same-owner;"
        f" chown -R orchard:orchard $t; mv $t $d/{name}"
    )
    result = qga.exec(script, timeout=120, stdin=buffer.getvalue())
    result.check()


def agent_rss_kb(qga: GuestAgent) -> tuple[int, int]:
    """(VmRSS, VmHWM) of the agent's main process, in kB."""
    pid = qga.sh("systemctl show -p MainPID --value orchard-agent.service").strip()
    status = qga.sh(f"cat /proc/{pid}/status")
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
    return int(values["VmRSS"]), int(values["VmHWM"])


FOOTPRINT = r"""
import pathlib
procs = pathlib.Path("/sys/fs/cgroup/system.slice/orchard-agent.service/cgroup.procs")
for pid in procs.read_text().split():
    try:
        argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        continue
    rss = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS"))
    names = [a.decode().rsplit("/", 1)[-1] for a in argv if a]
    name = names[1] if len(names) > 1 and names[0].startswith("python") else names[0]
    print(name, rss)
"""


def footprint(qga: GuestAgent) -> dict[str, float]:
    """RSS (MB) of the processes in orchard-agent.service's cgroup, by program, and the sum."""
    out: dict[str, float] = {}
    for line in qga.exec("python3 -", stdin=FOOTPRINT.encode()).check().out.splitlines():
        name, _, kb = line.rpartition(" ")
        out[name] = round(out.get(name, 0.0) + int(kb) / 1024, 1)
    out["total"] = round(sum(out.values()), 1)
    return out


def exposure(qga: GuestAgent, unit_name: str) -> tuple[float, str]:
    """``systemd-analyze security UNIT`` on the board: (overall exposure, the full table)."""
    out = qga.exec(f"systemd-analyze security --no-pager {unit_name}", timeout=300).out
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    if match is None:
        raise AssertionError(f"no exposure level in:\n{out}")
    return float(match.group(1)), out


# Every file pip installed, against the sha256 in its RECORD: a power cut must not leave a
# package that pip considers installed with files that never reached the disk.
VERIFY_RECORDS = r"""
import base64, csv, hashlib, pathlib
site = next(pathlib.Path("/opt/orchard/venv/lib").glob("python3*/site-packages"))
checked, bad = 0, []
for record in sorted(site.glob("*.dist-info/RECORD")):
    for row in csv.reader(record.open()):
        if len(row) < 2 or "=" not in row[1]:
            continue
        algo, _, digest = row[1].partition("=")
        path = site / row[0]
        try:
            data = path.read_bytes()
        except OSError as exc:
            bad.append(f"{row[0]}: {exc.strerror}")
            continue
        checked += 1
        got = base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=").decode()
        if got != digest:
            bad.append(f"{row[0]}: {len(data)} bytes, sha256 differs from {record.parent.name}")
print(checked, len(bad))
print("\n".join(bad[:40]))
"""


def verify_installed_files(qga: GuestAgent) -> tuple[int, list[str]]:
    """(files checked, files missing or not what pip's RECORD says)."""
    out = qga.exec("python3 -", timeout=1800, stdin=VERIFY_RECORDS.encode()).check().out
    head, *bad = out.strip().splitlines()
    return int(head.split()[0]), [line for line in bad if line]


def monotonic_s(props: dict[str, str], key: str) -> float:
    return int(props.get(key, "0") or 0) / 1e6


def startup(qga: GuestAgent) -> str:
    return qga.exec("systemd-analyze --no-pager", timeout=120).out.strip()
