"""Roll a release out in batches: canary first, then the rest, stopping at the abort threshold.

    batches = plan(targets, canary=1, batch="25%")
    report = SoftwareRollout(sender, link.publish, answer, ref=release.ref, ...).run(batches)

Each device of a batch gets a signed ``update`` command (agent/remote/command.py); the batch is
done when every device gave its final answer (``applied``, ``rolled_back``, ``rejected`` or
``refused``; ``updating`` is on the way) or its time is up (``timeout``). Anything but
``applied`` counts as a failure; when the failures reach ``abort_after`` no further batch is
sent (``skipped``), and the boards that failed already run their old version again (the board
decides that itself, agent/software/apply.py).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.remote.command import SoftwareRef
from coordinator.errors import ConfigError, CoordinatorError
from coordinator.remote.sender import ConfigSender, Publish, Target

logger = logging.getLogger(__name__)

FINAL = ("applied", "rolled_back", "rejected", "refused")
_BATCH = re.compile(r"^([1-9][0-9]*)(%?)$")


@dataclass(frozen=True)
class Answer:
    status: str
    reason: str | None = None
    agent_version: str | None = None


# The newest answer of (device_id, seq), or None.
Answers = Callable[[str, int], Answer | None]


@dataclass
class DeviceOutcome:
    device_id: str
    batch: int
    status: str = "skipped"  # applied | rolled_back | rejected | refused | timeout | not sent
    seq: int | None = None
    reason: str | None = None
    seconds: float | None = None  # command published to final answer

    @property
    def failed(self) -> bool:
        return self.status not in ("applied", "skipped")


@dataclass
class Report:
    version: str
    outcomes: list[DeviceOutcome] = field(default_factory=list)
    aborted: str | None = None

    @property
    def failures(self) -> int:
        return sum(1 for o in self.outcomes if o.failed)

    @property
    def ok(self) -> bool:
        return self.aborted is None and self.failures == 0


def plan(targets: Sequence[Target], *, canary: int, batch: str) -> list[list[Target]]:
    """``canary`` devices alone first, then batches of ``batch`` (``25%`` of the rest, or a
    count) in the order given."""
    if canary < 0:
        raise ConfigError("canary", canary, "a count of devices, 0 or more")
    m = _BATCH.match(batch.strip())
    if m is None or (m.group(2) and int(m.group(1)) > 100):
        raise ConfigError("batch", batch, "a count such as 5, or a share such as 25%")
    first, rest = list(targets[:canary]), list(targets[canary:])
    size = int(m.group(1))
    if m.group(2):
        size = max(1, math.ceil(len(rest) * size / 100))
    out = [first] if first else []
    out += [rest[i : i + size] for i in range(0, len(rest), size)]
    return out


class SoftwareRollout:
    def __init__(
        self,
        sender: ConfigSender,
        publish: Publish,
        answer: Answers,
        *,
        ref: SoftwareRef,
        expires_s: float,
        batch_timeout_s: float,
        abort_after: int,
        say: Callable[[str], None] = lambda line: None,
        poll_s: float = 0.5,
    ) -> None:
        self.sender = sender
        self.publish = publish
        self.answer = answer
        self.ref = ref
        self.expires_s = expires_s
        self.batch_timeout_s = batch_timeout_s
        self.abort_after = abort_after
        self.say = say
        self.poll_s = poll_s
        self._pause = threading.Event()

    def run(self, batches: Sequence[Sequence[Target]]) -> Report:
        report = Report(self.ref.version)
        for i, batch in enumerate(batches, 1):
            outcomes = [DeviceOutcome(t.device_id, i) for t in batch]
            report.outcomes += outcomes
            if report.aborted is not None:
                continue
            self.say(f"batch {i}/{len(batches)}: {', '.join(t.device_id for t in batch)}")
            self._batch(batch, outcomes)
            if report.failures >= self.abort_after:
                report.aborted = (
                    f"{report.failures} failure(s) reached --abort-after {self.abort_after}: "
                    f"{len(batches) - i} batch(es) not sent"
                )
                self.say(f"aborted: {report.aborted}")
        return report

    def _batch(self, batch: Sequence[Target], outcomes: list[DeviceOutcome]) -> None:
        started: dict[str, float] = {}
        for target, out in zip(batch, outcomes, strict=True):
            try:
                sent = self.sender.issue_update(target, self.ref, self.expires_s)
                self.sender.publish(sent, self.publish)
            except CoordinatorError as exc:
                out.status, out.reason = "not sent", str(exc)
                self.say(f"  {target.device_id}: not sent: {exc}")
                continue
            out.seq, out.status = sent.seq, "pending"
            started[target.device_id] = time.monotonic()
        deadline = time.monotonic() + self.batch_timeout_s
        waiting = [o for o in outcomes if o.seq is not None]
        while waiting:
            for out in list(waiting):
                assert out.seq is not None
                got = self.answer(out.device_id, out.seq)
                if got is None or got.status not in FINAL:
                    if got is not None and got.status != out.status:
                        out.status = got.status
                        self.say(f"  {out.device_id}: {got.status}")
                    continue
                out.status, out.reason = got.status, got.reason
                out.seconds = round(time.monotonic() - started[out.device_id], 1)
                waiting.remove(out)
                note = f" ({got.agent_version} runs)" if got.agent_version else ""
                why = f": {got.reason}" if got.reason else ""
                self.say(f"  {out.device_id}: {got.status} in {out.seconds:g} s{note}{why}")
            left = deadline - time.monotonic()
            if not waiting:
                return
            if left <= 0:
                break
            self._pause.wait(min(self.poll_s, left))
        for out in waiting:
            last, out.status = out.status, "timeout"
            out.reason = f"no final answer within {self.batch_timeout_s:g} s (last: {last})"
            self.say(f"  {out.device_id}: timeout")
