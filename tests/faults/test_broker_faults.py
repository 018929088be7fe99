"""MQTT faults on a real ``orchard-agent run`` process, against a real Mosquitto.

tests/agent/health covers the reporter in-process (fake clock, broker restart, bound) and a
kill -9 of the agent. Here the whole agent runs on real time while the network fails:
the broker stops for a while (health waits in the SQLite outbox, read from the file, and
arrives in order after; a small bound drops the oldest and counts them), and the agent's link
is cut or black-holed while the broker stays up (the broker's Last Will says ``lost``, the
next session says ``ready``). Subscribers parse plain JSON, not the agent's codec.

The promises are checked by the scenarios' ``problems()`` (shared with benchmarks/chaos.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.brokers import MosquittoBroker
from tests.faults.net_scenarios import KEEPALIVE_S, broker_outage, link_loss

pytestmark = pytest.mark.slow


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("bound", "down_s"), [(1000, 12.0), (4, 10.0)], ids=["roomy-outbox", "tight-outbox"]
)
def test_broker_down_queues_health_and_delivers_it_in_order_after(
    mosquitto_broker: MosquittoBroker, tmp_path: Path, bound: int, down_s: float
) -> None:
    result = broker_outage(tmp_path, mosquitto_broker, down_s=down_s, bound=bound)

    # queued within the bound while down; after: every kept message, in order, then the stream;
    # the only gaps are the oldest messages of the outage, as many as the drop counter says,
    # and the next health message reports that count
    assert result.problems() == [], result
    if bound < down_s:  # the tight bound was really exceeded
        assert result.queued_max == bound and result.dropped > 0, result
    else:  # everything the outage produced was kept
        assert result.dropped == 0 and result.queued_max < bound, result


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["cut", "blackhole"])
def test_a_link_lost_while_the_broker_stays_up_reads_lost_then_ready_next_session(
    mosquitto_broker: MosquittoBroker, tmp_path: Path, mode: str
) -> None:
    result = link_loss(tmp_path, mosquitto_broker, mode=mode, down_s=3.0)

    # retained "lost" (the Last Will of the session that died; for a black hole only after
    # the keepalive expired), then "ready" with the next session once the link is back; the
    # health produced while cut off arrives after, in order, none missing
    assert result.problems() == [], result
    assert result.lost["state"] == "lost" and result.ready_after["state"] == "ready"
    if mode == "blackhole":
        assert result.lost_after_s >= KEEPALIVE_S
