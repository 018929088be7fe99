"""``python -m agent.trainer --config agent.toml`` (also ``orchard-agent trainer``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from agent import exit_codes
from agent.errors import InvalidConfig

logger = logging.getLogger("agent.trainer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchard-trainer", description=__doc__)
    parser.add_argument("--config", "-c", type=Path, default=Path("/etc/orchard/agent.toml"))
    parser.add_argument(
        "--idle-timeout", type=float, default=None, help="seconds; overrides config"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s trainer %(name)s: %(message)s"
    )
    return run(args.config, args.idle_timeout)


def run(config_path: Path, idle_timeout: float | None = None) -> int:
    from agent import config as agent_config
    from agent.federation import status
    from agent.trainer import lean, server

    try:
        cfg = agent_config.load(config_path)
    except InvalidConfig as exc:
        print(exc, file=sys.stderr)
        return exit_codes.CONFIG_ERROR
    budget = cfg.training
    sock = server.listener(cfg.federation.trainer_socket)
    threads = server.lower_priority(
        budget.nice, budget.cpu_quota_pct, budget.reserve_agent_cpu, idle=budget.idle_scheduling
    )
    # Thread pools are sized before TensorFlow is imported (it reads these once).
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    lean.skip_optional()  # before TensorFlow: no matplotlib, no scipy
    status_path = status.path_for(cfg.state_dir)
    status.update(status_path, state="starting", pid=os.getpid(), request_started=None)

    stopping = False

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    from agent.store import open_store
    from agent.trainer.jobs import JobError, Jobs

    def on_error(exc: BaseException) -> tuple[int, str]:
        if isinstance(exc, JobError):
            logger.warning("request refused: %s", exc)
            return int(exc.code), str(exc)
        logger.error("request failed", exc_info=exc)
        return 603, f"{type(exc).__name__}: {exc}"

    store = open_store(cfg.store)
    jobs = Jobs(store, status_path)
    status.update(status_path, state="idle")
    logger.info("trainer ready (pid %d, %d CPU thread(s))", os.getpid(), threads)
    try:
        server.serve(
            sock,
            jobs.handle,
            idle_timeout_s=idle_timeout if idle_timeout is not None else budget.idle_timeout_s,
            on_error=on_error,
            should_stop=lambda: stopping,
        )
    finally:
        store.close()
        status.update(status_path, state="stopped", pid=None, request_started=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
