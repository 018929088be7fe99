"""Network and federation faults on real processes, shared by tests/faults and benchmarks/chaos.py.

Each scenario drives real programs (``orchard-agent run``, Mosquitto, Flower's SuperLink and
SuperNodes) through one fault whose length or count is a parameter, and returns what it saw.
The tests call them with CI-sized parameters and assert on the result; the chaos bench calls
them with long ones and prints the figures. Only the network (tests/netproxy.py) and the board
(a fake device tree and thermal files) are simulated.

    broker_outage(work, broker, down_s=12, bound=4)      # Mosquitto stopped, outbox bounded
    link_loss(work, broker, mode="blackhole")            # agent cut off, broker up: Last Will
    with fed_fleet(work, bundle) as fleet:
        superlink_kills(fleet, kills=1)                  # SIGKILL mid-round, restart, new run
        trainer_hang(fleet)                              # over time in round 1, round 2 works

The scenarios live in ``mqtt_scenarios`` (health over MQTT) and ``fed_scenarios``
(federation), on the fleet and prediction load of ``net_procs``; this module gathers them.
"""

from __future__ import annotations

from tests.faults.fed_scenarios import (
    OVER_BUDGET,
    HangResult,
    KillRecord,
    KillResult,
    superlink_kills,
    trainer_hang,
)
from tests.faults.mqtt_scenarios import (
    KEEPALIVE_S,
    SAMPLE_S,
    LinkLossResult,
    OutageResult,
    broker_outage,
    health_agent,
    health_of,
    link_loss,
    order,
    outbox_rows,
    seqs_of,
)
from tests.faults.net_procs import (
    PREDICT_BODY,
    FedFleet,
    Predictions,
    Progress,
    fed_fleet,
    kill_superlink,
    predict,
)

__all__ = [
    "KEEPALIVE_S",
    "OVER_BUDGET",
    "PREDICT_BODY",
    "SAMPLE_S",
    "FedFleet",
    "HangResult",
    "KillRecord",
    "KillResult",
    "LinkLossResult",
    "OutageResult",
    "Predictions",
    "Progress",
    "broker_outage",
    "fed_fleet",
    "health_agent",
    "health_of",
    "kill_superlink",
    "link_loss",
    "order",
    "outbox_rows",
    "predict",
    "seqs_of",
    "superlink_kills",
    "trainer_hang",
]
