"""Store fault scenarios (issue 7): SIGKILL while retention runs, and a disk that fills up.

    run_store_kills(workdir, kills=8)         a store writer SIGKILLed while retention runs
    run_store_disk_full(workdir, cycles=2)    the store's files cannot grow (RLIMIT_FSIZE)
    run_store_enospc(workdir)                 a really full filesystem (tmpfs, user namespace)
    run_agent_disk_full(workdir, seconds=3)   the whole agent on a store that cannot grow

Each builds its world under ``workdir``, injects the fault, checks the promise
(``AssertionError`` naming what broke) and returns figures. The writers run as
``python -m tests.faults.store_scenarios ROLE ...`` (see :data:`ROLES`).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.faults.agent_procs import (
    REPO,
    Agent,
    Output,
    Role,
    agent_config,
    child,
    child_env,
    main,
    stop_process,
)

MODULE = "tests.faults.store_scenarios"  # the module the writer roles run from


def read_seqs(path: Path) -> tuple[str, list[int], tuple[int, int] | None]:
    """(integrity_check, stored sequence numbers in id order, (min id, max id))."""
    conn = sqlite3.connect(path)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        seqs = [int(ts) for (ts,) in conn.execute("SELECT ts FROM samples ORDER BY id")]
        lo, hi = conn.execute("SELECT MIN(id), MAX(id) FROM samples").fetchone()
    finally:
        conn.close()
    return str(integrity), seqs, None if lo is None else (int(lo), int(hi))


def read_seqs_ts(path: Path) -> list[float]:
    """Every stored timestamp, read-only (the agent may be writing)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [float(ts) for (ts,) in conn.execute("SELECT ts FROM samples")]
    finally:
        conn.close()


def _check_store(path: Path, reported: int, what: str) -> list[int]:
    integrity, seqs, ids = read_seqs(path)
    assert integrity == "ok", f"{what}: integrity_check says {integrity}"
    if seqs:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{what}: holes or duplicates"
        assert ids is not None and ids[1] - ids[0] + 1 == len(seqs), f"{what}: ids not contiguous"
    assert (seqs[-1] if seqs else -1) >= reported, f"{what}: lost committed rows"
    return seqs


# -- SIGKILL while retention runs ----------------------------------------------------------------


def _writer_role(argv: list[str]) -> None:
    """Append batches of ``seq`` rows with retention on; print the last seq of every commit."""
    from agent.store import SqliteStore, StoreSettings
    from agent.types import Sample

    path, batch, max_rows, max_bytes = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    options = StoreSettings(
        path=path, max_rows=max_rows, max_bytes=max_bytes, retention_interval_s=0
    )

    def often(conn: sqlite3.Connection) -> None:  # checkpoints too get killed mid-way
        conn.execute("PRAGMA wal_autocheckpoint = 8")

    store = SqliteStore(options, on_connect=often)
    newest = store.stats().newest_ts
    seq = 0 if newest is None else int(newest) + 1
    print("ready", flush=True)
    pad = "x" * 200  # labels make bytes, not rows, the bound that bites
    while True:
        store.append_many(Sample(float(s), {"seq": float(s)}, pad) for s in range(seq, seq + batch))
        seq += batch
        print(seq - 1, flush=True)


def run_store_kills(
    workdir: Path, kills: int = 8, *, seed: int | None = None, max_rows: int = 400
) -> dict[str, Any]:
    """SIGKILL a writer whose every append runs retention (row and byte bounds: deletes,
    incremental vacuum, TRUNCATE checkpoints) at random moments; after each kill the file is
    intact, ids and sequence numbers have no holes, no committed row is lost."""
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    rng = random.Random(seed)
    path = workdir / "retained.db"
    workdir.mkdir(parents=True, exist_ok=True)
    reported, most = -1, 0
    for k in range(kills):
        batch = rng.choice([1, 5, 40])
        args = (str(path), str(batch), str(max_rows), str(128 * 1024))
        proc = child("store-writer", *args, module=MODULE)
        out = Output(proc)
        try:
            index, line = out.next_after(0, 30)
            assert line == "ready", f"seed={seed}: {line}"
            for _ in range(rng.randint(0, 30)):
                index, line = out.next_after(index, 30)
                assert line is not None, f"seed={seed}: writer died: {out.tail()}"
                reported = int(line)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            out.join(10)
            reported = max([reported, *(int(ln) for ln in out.lines[index:] if ln.isdigit())])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        seqs = _check_store(path, reported, f"kill {k}, seed={seed}")
        most = max(most, len(seqs))
        assert len(seqs) <= max_rows + batch, f"seed={seed}: {len(seqs)} rows > bound"
    assert reported > 0, f"seed={seed}: the writer never committed"
    return {"kills": kills, "seed": seed, "last_committed": reported, "max_rows_seen": most}


# -- a file size limit (EFBIG) ---------------------------------------------------------------------


def _full_writer_role(argv: list[str]) -> None:
    """Hit RLIMIT_FSIZE ``cycles`` times: report errors, keep trying, recover; then stay full."""
    from agent.errors import AgentError
    from agent.store import SqliteStore, StoreSettings
    from agent.types import Sample

    path, room, cycles, attempts = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, as LimitFSIZE= does
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    store = SqliteStore(StoreSettings(path=path))
    seq = 0

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    def append() -> str | None:
        nonlocal seq
        try:
            store.append_many(Sample(float(s), {"seq": float(s)}) for s in range(seq, seq + 10))
        except AgentError as exc:
            return f"{type(exc).__name__}: {exc}"
        seq += 10
        say(committed=seq - 1)
        return None

    for cycle in range(cycles + 1):
        sizes = [p.stat().st_size for p in path.parent.glob(f"{path.name}*")]
        resource.setrlimit(resource.RLIMIT_FSIZE, (max(sizes) + room, hard))
        while (error := append()) is None:
            pass
        errors = [error, *(append() for _ in range(attempts))]
        say(errors=errors, rows=store.stats().rows)  # reads still work while full
        if cycle == cycles:
            break
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # room again
        assert append() is None, "no recovery after the space came back"
    say(full=True)
    threading.Event().wait()  # killed here, while the disk is full


def run_store_disk_full(
    workdir: Path, cycles: int = 2, *, room: int = 128 * 1024
) -> dict[str, Any]:
    """The store's files may grow by ``room`` bytes, then no more (a kernel-enforced file size
    limit, ``EFBIG``): every append fails with a clear error and the process goes on, committed
    rows stay, reads work, appends resume when space returns; killed while full, the file is
    intact."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "full.db"
    proc = child("full-writer", str(path), str(room), str(cycles), "5", module=MODULE)
    out = Output(proc)
    reported, outages, messages = -1, 0, []
    try:
        index = 0
        while True:
            index, line = out.next_after(index, 60)
            assert line is not None, f"writer died:\n{out.tail()}"
            event = json.loads(line)
            if "committed" in event:
                reported = event["committed"]
            elif "errors" in event:
                outages += 1
                messages.extend(event["errors"])
                assert event["rows"] == reported + 1, f"rows {event['rows']} != {reported + 1}"
            elif event.get("full"):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    for message in messages:
        assert message.startswith("StoreError") and str(path) in message, message
        assert "disk full" in message and "no space" in message, message
    _check_store(path, reported, "after a kill while full")
    from agent.store import SqliteStore, StoreSettings
    from agent.types import Sample

    with SqliteStore(StoreSettings(path=path)) as store:  # and it takes rows again
        store.append(Sample(float(reported + 1), {"seq": float(reported + 1)}))
    _check_store(path, reported + 1, "after reopening")
    return {
        "outages": outages,
        "failed_appends": len(messages),
        "committed": reported + 1,
        "message": messages[0],
    }


# -- a really full filesystem (ENOSPC) -------------------------------------------------------------


def _enospc_role(argv: list[str]) -> None:
    """Inside a private tmpfs: fill it, hit ENOSPC, free space, check; print one JSON result."""
    from agent.errors import StoreError
    from agent.store import SqliteStore, StoreSettings
    from agent.types import Sample

    path = Path(argv[0])
    store = SqliteStore(StoreSettings(path=path))
    seq = 0
    errors: list[str] = []
    while len(errors) < 3:
        try:
            store.append_many(Sample(float(s), {"seq": float(s)}) for s in range(seq, seq + 20))
            seq += 20
        except StoreError as exc:
            errors.append(str(exc))
    (path.parent / "ballast").unlink()  # space comes back
    store.append_many(Sample(float(s), {"seq": float(s)}) for s in range(seq, seq + 20))
    store.close()
    integrity, seqs, _ids = read_seqs(path)
    print(
        json.dumps(
            {
                "errors": errors,
                "integrity": integrity,
                "seqs_ok": seqs == list(range(seq + 20)),
                "rows": len(seqs),
            }
        )
    )


def enospc_available() -> bool:
    """Whether this user may mount a tmpfs in a private user and mount namespace."""
    exe = shutil.which("unshare")
    if exe is None:
        return False
    probe = [exe, "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"]
    return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0


def run_store_enospc(workdir: Path, size_kib: int = 512) -> dict[str, Any]:
    """A real full filesystem: a ``size_kib`` tmpfs, mostly filled by a ballast file."""
    mount = workdir / "tmpfs"
    mount.mkdir(parents=True, exist_ok=True)
    script = (
        f"mount -t tmpfs -o size={size_kib}k tmpfs {mount} && "
        f"head -c {(size_kib - 256) * 1024} /dev/zero > {mount}/ballast && "
        f"exec {sys.executable} -m {MODULE} enospc-writer {mount}/s.db"
    )
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    for message in result["errors"]:
        assert f"{mount}/s.db" in message and "disk full" in message, message
    assert result["integrity"] == "ok" and result["seqs_ok"], result
    return {"rows": result["rows"], "message": result["errors"][0]}


# -- the whole agent on a store that cannot grow ---------------------------------------------------


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec: both survive exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def run_agent_disk_full(
    workdir: Path, seconds: float = 3.0, *, limit: int = 256 * 1024
) -> dict[str, Any]:
    """``orchard-agent run`` whose files may not exceed ``limit`` bytes, sampling at 20 Hz.

    The store fills within a second. Then, for ``seconds``: the agent answers, the sensor stays
    ``ok`` and keeps being read, the failure is logged once with the path and "disk full" (not
    once per sample); a clean stop exits 0 and the file is intact.
    """
    config, port = agent_config(workdir / "agent")
    db = workdir / "agent" / "state" / "store.db"
    with Agent(config, port, plugins=False, preexec_fn=_limit_file_size(limit)) as agent:
        agent.up()
        line = agent.out.wait_for("sample sink failed", 30)
        assert str(db) in line and "disk full" in line and "no space" in line, line
        read_before = agent.metric("orchard_sensor_readings_accepted_total", sensor="env")
        pause = threading.Event()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            health = agent.up(5)
            assert health["sensors"] == {"env": "ok"}, health
            pause.wait(0.25)
        read_after = agent.metric("orchard_sensor_readings_accepted_total", sensor="env")
        assert read_after - read_before >= 5 * seconds, (read_before, read_after)  # 20 Hz nominal
        logged = len(agent.out.matching("sample sink failed"))
        assert logged == 1, f"logged {logged} times:\n{agent.out.tail()}"
        failed_writes = agent.metric("orchard_errors_total", kind="store_write")
        assert failed_writes >= 5 * seconds, failed_writes  # each failed write is counted
        code = stop_process(agent.proc)
        assert code == 0, f"exit {code}:\n{agent.out.tail()}"
    integrity, seqs, _ids = read_seqs(db)
    assert integrity == "ok" and seqs, (integrity, len(seqs))
    return {
        "rows_kept": len(seqs),
        "readings_while_full": int(read_after - read_before),
        "log_lines": logged,
        "failed_writes": int(failed_writes),
        "message": line.split(": ", 1)[-1],
    }


# -- children ----------------------------------------------------------------------------------

ROLES: dict[str, Role] = {
    "store-writer": _writer_role,
    "full-writer": _full_writer_role,
    "enospc-writer": _enospc_role,
}

if __name__ == "__main__":
    main(sys.argv[1:], ROLES)
