"""The root updater in a process of its own, to be killed (SIGKILL) mid-update by a test.

    python -m tests.agent.software.killed BASE STATE CA_PEM

Its agent never becomes healthy (the probe waits for ever), so the update stays at
``switched`` until the process is killed; before that it is at ``installing`` while pip runs.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from agent.software.apply import Budget, Updater
from agent.software.files import UpdateFiles
from agent.software.layout import VenvLayout


class Services:
    def restart(self, unit: str, timeout_s: float) -> None:
        pass

    def handover(self, unit: str, timeout_s: float) -> None:
        pass

    def stop(self, unit: str, timeout_s: float) -> None:
        pass


def main() -> None:
    base, state, ca = (Path(a) for a in sys.argv[1:4])
    never = threading.Event()
    updater = Updater(
        VenvLayout(base),
        UpdateFiles(state),
        trust_ca=ca,
        requirement="orchard-fl[agent]",
        services=Services(),
        probe=lambda within_s: None if never.wait() else "never",
        golden=lambda venv: None,
        budget=Budget(healthy_within_s=3600.0),
    )
    updater.apply()


if __name__ == "__main__":
    main()
