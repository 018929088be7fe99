"""``orchard-agent``: the always-on board process. Never imports TensorFlow.

Exit codes are in ``agent.exit_codes`` (78 = configuration error, not restarted by systemd;
75 = restart for a remote configuration change).

The parser is the standard library's ``argparse``: the agent runs for months inside a 75 MB
budget, and typer pulls in click, rich, markdown-it and pygments (~11.5 MB RSS) for help
screens the board never shows. Heavy modules are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from agent import exit_codes

if TYPE_CHECKING:
    from agent.config import AgentSettings

DEFAULT_CONFIG = Path("/etc/orchard/agent.toml")
logger = logging.getLogger(__name__)


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _fail(message: str, code: int) -> _Exit:
    sys.stderr.write(f"{message}\n")
    return _Exit(code)


def _load_or_exit(path: Path, *, overlay: bool = True) -> AgentSettings:
    """Load the config (with the remote overlay), or print every problem and exit with the
    config-error code."""
    from agent import config
    from agent.errors import InvalidConfig

    try:
        return config.load(path, overlay=overlay)
    except InvalidConfig as exc:
        raise _fail(str(exc), exit_codes.CONFIG_ERROR) from exc


def check_config(args: argparse.Namespace) -> None:
    """Validate a config file; name every wrong key, its value and what was expected. The
    remote overlay (<state_dir>/remote/agent.toml) is applied unless --no-overlay."""
    cfg = _load_or_exit(args.path, overlay=not args.no_overlay)
    sensors = ", ".join(f"{s.name} ({s.driver})" for s in cfg.sensors)
    print(f"{args.path}: OK — device {cfg.device_id}, sensors: {sensors}")
    print(
        f"  store {cfg.store.path}, models {cfg.models.dir}, http {cfg.http.host}:{cfg.http.port}"
    )
    used = cfg.overlay
    if used.path is not None:
        print(f"  remote overlay {used.path}: {', '.join(used.keys) or 'no keys'}")
    for skipped in used.skipped:
        print(f"  remote overlay skipped: {skipped}")
    print(f"  config version {cfg.config_version}")


def run(args: argparse.Namespace) -> None:
    """Run the agent: sample sensors, keep the store, serve predictions (until SIGTERM)."""
    # One BLAS thread: the agent's numpy work is tiny, and each OpenBLAS thread costs a stack
    # and a buffer (set before anything imports numpy; an explicit setting wins).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from agent.errors import AgentError
    from agent.remote import trial as remote_trial
    from agent.runner import AgentRunner

    trial = remote_trial.begin(args.config)  # a remote change on trial: count this start
    cfg = _load_or_exit(args.config)
    if not getattr(args, "verbose", False):
        logging.getLogger().setLevel(cfg.logging.level.upper())
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner = AgentRunner(cfg)
    # A software update's switch: hand over to the release the venv link names now.
    signal.signal(signal.SIGUSR2, lambda signum, frame: runner.request_handover())
    try:
        runner.run(stop)
    except AgentError as exc:
        if trial is not None:
            trial.failed(str(exc))
        raise _fail(f"error: {exc}", exit_codes.RUNTIME_FAILURE) from exc
    # Everything is stopped, written and closed: leave without the interpreter's teardown
    # (unloading numpy, LiteRT and the rest costs seconds on a small board, and systemd
    # starts the next agent only once this one is gone).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(runner.exit_code)


def trainer(args: argparse.Namespace) -> None:
    """Run the trainer (the only process that imports TensorFlow) for orchard-trainer.service."""
    from agent.trainer.__main__ import run as run_trainer

    code = run_trainer(args.config, args.idle_timeout)
    if code != exit_codes.OK:
        raise _Exit(code)


def import_csv(args: argparse.Namespace) -> None:
    """Append recorded readings from a CSV (feature columns, optional label and ts) to the
    board's store; nothing is written when a cell is wrong."""
    from agent.importer import ImportError_, import_csv
    from agent.store import open_store

    cfg = _load_or_exit(args.config)
    store = open_store(cfg.store)
    try:
        count = import_csv(store, args.file, step_s=args.step_s)
    except ImportError_ as exc:
        raise _fail(str(exc), exit_codes.DATA_ERROR) from exc
    finally:
        store.close()
    print(f"imported {count} rows from {args.file} into {cfg.store.path}")


def version(_args: argparse.Namespace) -> None:
    """Print the agent's version and the inference runtime it would use."""
    from importlib.metadata import version as dist_version

    from models.errors import RuntimeUnavailableError
    from models.runtime import backend

    try:
        rt = backend()
        runtime = f"{rt.name} {rt.version}"
    except RuntimeUnavailableError as exc:
        runtime = f"none ({exc})"
    print(f"orchard-agent {dist_version('orchard-fl')} (Python {platform.python_version()})")
    print(f"inference runtime: {runtime}")


def software(args: argparse.Namespace) -> None:
    """Install a staged agent release (root; orchard-update.service), or repair after a power
    cut (at boot; orchard-update-recover.service), or show the environments."""
    import json

    from agent.software.system import updater_for

    cfg = _load_or_exit(args.config)
    updater = updater_for(cfg, base=args.base)
    if args.action == "status":
        layout = updater.layout
        journal = layout.read_journal()
        doc = {
            "link": str(layout.link),
            "active": layout.active() if layout.link.exists() else None,
            "journal": None if journal is None else journal.__dict__,
            "request": updater.files.request.exists(),
        }
        print(json.dumps(doc, indent=2))
        return
    result = updater.recover() if args.action == "recover" else updater.apply()
    if result is None:
        print("nothing to do")
        return
    print(json.dumps(result.__dict__))
    if result.outcome != "applied":
        raise _Exit(exit_codes.RUNTIME_FAILURE if args.action == "apply" else exit_codes.OK)


def build_parser() -> argparse.ArgumentParser:
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="Debug logging."
    )
    parser = argparse.ArgumentParser(
        prog="orchard-agent", description="Orchard agent: runs on the board.", parents=[verbose]
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    sub = commands.add_parser(
        "check-config",
        parents=[verbose],
        help=check_config.__doc__,
        description=check_config.__doc__,
    )
    sub.add_argument(
        "path", nargs="?", type=Path, default=DEFAULT_CONFIG, help="The agent.toml to check."
    )
    sub.add_argument(
        "--no-overlay",
        action="store_true",
        help="Check the file alone, without the remote overlay in <state_dir>/remote/.",
    )
    sub.set_defaults(func=check_config)

    sub = commands.add_parser("run", parents=[verbose], help=run.__doc__, description=run.__doc__)
    sub.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="agent.toml")
    sub.set_defaults(func=run)

    sub = commands.add_parser(
        "trainer", parents=[verbose], help=trainer.__doc__, description=trainer.__doc__
    )
    sub.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="agent.toml")
    sub.add_argument(
        "--idle-timeout", type=float, default=None, help="Seconds; overrides the config."
    )
    sub.set_defaults(func=trainer)

    sub = commands.add_parser(
        "import-csv", parents=[verbose], help=import_csv.__doc__, description=import_csv.__doc__
    )
    sub.add_argument("file", type=Path, help="CSV: feature columns, optional label and ts.")
    sub.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="agent.toml")
    sub.add_argument(
        "--step-s", type=float, default=60.0, help="Row spacing without a ts column (s)."
    )
    sub.set_defaults(func=import_csv)

    sub = commands.add_parser(
        "software", parents=[verbose], help=software.__doc__, description=software.__doc__
    )
    sub.add_argument("action", choices=("apply", "recover", "status"))
    sub.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="agent.toml")
    sub.add_argument(
        "--base", type=Path, default=Path("/opt/orchard"), help="Where the environments live."
    )
    sub.set_defaults(func=software)

    sub = commands.add_parser(
        "version", parents=[verbose], help=version.__doc__, description=version.__doc__
    )
    sub.set_defaults(func=version)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``orchard-agent``; exits with a code from :mod:`agent.exit_codes`."""
    args = build_parser().parse_args(argv)  # usage errors exit with 2 (exit_codes.USAGE)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except _Exit as exc:
        sys.exit(exc.code)
    sys.exit(exit_codes.OK)
