"""Verify a staged model bundle in a child process, under a memory limit and a timeout.

    python -m agent.verify_child BUNDLE --num-threads N --latency-bound-ms MS --memory-mb MB

A candidate's flatbuffer declares its tensor shapes and LiteRT allocates whatever they ask for,
so a damaged or hostile candidate can take gigabytes. Verifying it in the serving process would
hand that memory to the agent (on a board: the OOM killer ends the agent, systemd restarts it and
the candidate is tried again). The child imports the runtime, then limits its own address space
(``RLIMIT_AS``) to what it has mapped so far plus ``--memory-mb``, so the budget is what the
*model* may add, whatever the platform's baseline. It runs :func:`verify` (the checks the serving
process relies on: size, sha256, tensor shapes, golden samples, the latency bound) and prints one
JSON line on stdout: ``{"ok": true, "median_ms": 0.05}`` or ``{"ok": false, "reason": "..."}``.

:func:`verify_in_child` is the parent's side: it refuses (:class:`ModelSlotError`) on a reported
failure, a non-zero exit, a signal, or the timeout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import AgentError, ModelSlotError
from models.errors import ModelCorruptError, ModelError
from models.runtime import Predictor, backend

logger = logging.getLogger(__name__)

LATENCY_SAMPLES = 20
MODULE = "agent.verify_child"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the child runs this very code


# -- the checks (run in the child) -------------------------------------------------------------


def verify(bundle: Path, *, num_threads: int, latency_bound_ms: float) -> float:
    """Load ``bundle`` as the server would and time it; return the median predict in ms."""
    predictor = Predictor.load(bundle, num_threads=num_threads)
    return check_latency(predictor, latency_bound_ms)


def check_latency(predictor: Predictor, bound_ms: float) -> float:
    """The median of single-sample predicts over the golden inputs, or raise over ``bound_ms``."""
    golden = np.asarray(predictor.manifest.golden_inputs, np.float32)
    samples = [golden[i % len(golden)][np.newaxis] for i in range(LATENCY_SAMPLES)]
    predictor.model.predict(samples[0])  # warm up at batch size 1
    times = []
    for x in samples:
        t0 = time.perf_counter()
        predictor.model.predict(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    median = statistics.median(times)
    if not median < bound_ms:
        raise ModelSlotError(
            f"expected a single-sample predict under {bound_ms:g} ms "
            f"(median of {LATENCY_SAMPLES}). Received: {median:.3f} ms"
        )
    return median


def limit_address_space(extra_mb: float) -> int:
    """Cap this process's address space at its current size plus ``extra_mb``; return the cap."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 512 << 20  # not Linux: assume a runtime of this size
    cap = mapped + int(extra_mb * (1 << 20))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap


def _verdict(
    bundle: Path, num_threads: int, latency_bound_ms: float, memory_mb: float
) -> dict[str, Any]:
    try:
        backend()  # import LiteRT before the limit: the budget is the model's alone
        limit_address_space(memory_mb)
        median = verify(bundle, num_threads=num_threads, latency_bound_ms=latency_bound_ms)
    except MemoryError:
        return {
            "ok": False,
            "reason": f"out of memory: the model asks for more than {memory_mb:g} MB",
        }
    except ModelCorruptError as exc:  # LiteRT says little when an allocation fails
        note = f" (verified under a memory limit of {memory_mb:g} MB over the runtime)"
        return {"ok": False, "reason": f"{exc}{note if 'LiteRT' in str(exc) else ''}"}
    except (ModelError, AgentError) as exc:
        return {"ok": False, "reason": str(exc)}
    except Exception as exc:  # whatever LiteRT raises, the verdict is a refusal naming it
        return {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "median_ms": round(median, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--latency-bound-ms", type=float, default=50.0)
    parser.add_argument("--memory-mb", type=float, default=128.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a LiteRT crash leaves no core file
    verdict = _verdict(args.bundle, args.num_threads, args.latency_bound_ms, args.memory_mb)
    print(json.dumps(verdict), flush=True)
    return 0


# -- the parent's side -------------------------------------------------------------------------


def verify_in_child(
    bundle: Path,
    *,
    num_threads: int,
    latency_bound_ms: float,
    memory_mb: float,
    timeout_s: float,
) -> float:
    """Run :func:`main` on ``bundle`` in a child; return its median predict (ms) or raise."""
    cmd = [
        sys.executable,
        "-m",
        MODULE,
        str(bundle),
        "--num-threads",
        str(num_threads),
        "--latency-bound-ms",
        repr(latency_bound_ms),
        "--memory-mb",
        repr(memory_mb),
    ]
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), path]))}
    started = time.monotonic()
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise ModelSlotError(
            f"expected verification to finish within {timeout_s:g} s. It did not; "
            "the verifying process was killed"
        ) from None
    except OSError as exc:
        raise ModelSlotError(f"cannot start the verifying process: {exc}") from exc
    took = time.monotonic() - started
    if done.returncode < 0:
        name = _signal_name(-done.returncode)
        raise ModelSlotError(
            f"verification was killed by {name}, probably out of memory (limit: {memory_mb:g} MB "
            f"over the runtime) or a crash in LiteRT{_tail(done.stderr)}"
        )
    if done.returncode != 0:
        raise ModelSlotError(f"verification exited with code {done.returncode}{_tail(done.stderr)}")
    verdict = _last_json(done.stdout)
    if verdict is None:
        raise ModelSlotError(
            f"expected one JSON verdict line from the verifying process. "
            f"Received: {done.stdout[-200:]!r}"
        )
    if verdict.get("ok") is not True:
        raise ModelSlotError(str(verdict.get("reason") or "verification failed, no reason given"))
    median = float(verdict.get("median_ms", 0.0))
    logger.info(
        "verified %s in a child process in %.2f s (median predict %.3f ms)", bundle, took, median
    )
    return median


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _tail(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("INFO:")]
    return f": {lines[-1][-200:]}" if lines else ""


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


if __name__ == "__main__":
    sys.exit(main())
