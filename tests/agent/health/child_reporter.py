"""A reporter in its own process, for kill -9 tests: ``python -m ... PORT STATE_DIR ROOT``.

Prints ``connected`` once its status is published, then idles until killed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from tests.agent.health.conftest import health_settings, mqtt_settings


def main() -> None:
    from agent.health.reporter import HealthReporter

    port, state_dir, root = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    reporter = HealthReporter(
        mqtt_settings(port), "child-1", health=health_settings(state_dir, root)
    )
    reporter.start()
    reporter.set_state("ready")
    deadline = threading.Event()
    while not reporter.transport.connected and not deadline.wait(0.02):
        pass
    sys.stdout.write("connected\n")
    sys.stdout.flush()
    threading.Event().wait(120)  # killed by the test long before


if __name__ == "__main__":
    main()
