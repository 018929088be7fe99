"""Build, sign, store and publish configuration commands (``orchard-coordinator config set``).

Each target device gets its own :class:`~agent.remote.command.Command` (its ``seq`` from the
command store, ``issued`` now, ``expires`` after ``expires_s``, the patch, ``signer_url`` = the
artifact server's ``/signer.pem``), signed with ``[delivery] signing_cert/signing_key`` over
``signed_bytes`` and checked in its wire form as the board will decode it, stored, then
published retained on ``<base>/command``. There is no unsigned path: :class:`ConfigSender`
needs a :class:`~orchard_common.signing.Signer`.

A device's topic holds one retained command, so a new one replaces an older one the board has
not read yet (it was off). The keys of such a command (the device's newest, unanswered and not
expired) are carried forward into the new one, under the new keys: nothing the operator sent
is lost by being overtaken. ``Issued.carried`` names them::

    sender = ConfigSender(store, signer, signer_url, answered=lambda d, s: bool(reg.acks(d, [s])))
    issued = sender.issue(Target("pi-1", None), {"sampling.interval_s": "5"}, expires_s=3600)
    with CommandLink.connect(mqtt_settings) as link:
        sender.publish(issued.sent, link.publish)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.health.schema import DEFAULT_PREFIX, SchemaError, Topics
from agent.remote.command import MAX_PATCH, Command, SoftwareRef, signed_bytes
from coordinator.errors import ConfigError
from coordinator.remote.errors import PatchError, RemoteError
from coordinator.remote.store import CommandStore, SentCommand
from orchard_common.signing import Signer, sign_artifact

logger = logging.getLogger(__name__)

Publish = Callable[[str, str], None]  # (topic, payload): returns once the broker confirmed it
Answered = Callable[[str, int], bool]  # (device_id, seq): whether the device answered it


@dataclass(frozen=True)
class Target:
    device_id: str
    fleet: str | None = None


@dataclass(frozen=True)
class Issued:
    sent: SentCommand
    carried: dict[str, str | None] = field(default_factory=dict)  # from an overtaken command


def signer_url(delivery_url: str) -> str:
    """Where boards fetch the signer certificate: the artifact server's ``/signer.pem``."""
    return f"{delivery_url.rstrip('/')}/signer.pem"


def build(
    device_id: str,
    seq: int,
    now: float,
    patch: Mapping[str, str | None],
    *,
    expires_s: float,
    signer: Signer,
    signer_url: str,
    update: SoftwareRef | None = None,
) -> Command:
    """The signed command, validated in its wire form (``RemoteError`` if the board would not
    decode it). With ``update``: an ``update`` command for that release (no patch)."""
    command = Command(
        device_id=device_id,
        seq=seq,
        issued=now,
        expires=now + expires_s,
        kind="config" if update is None else "update",
        patch=dict(patch),
        update=update,
        signer_url=signer_url,
    )
    signed = sign_artifact(command, signer, signed_bytes=signed_bytes)
    try:
        return Command.from_json(signed.to_json())
    except SchemaError as exc:
        raise RemoteError(f"command for {device_id}: {exc}") from None


class ConfigSender:
    def __init__(
        self,
        store: CommandStore,
        signer: Signer,
        signer_url: str,
        *,
        answered: Answered,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.signer = signer
        self.signer_url = signer_url
        self.answered = answered
        self.prefix = prefix
        self.clock = clock

    def issue(self, target: Target, patch: Mapping[str, str | None], expires_s: float) -> Issued:
        """Sign and store ``target``'s next command (not published yet)."""
        carried = self._overtaken(target.device_id, patch)
        full = {**carried, **patch}
        if len(full) > MAX_PATCH:
            raise PatchError(
                [
                    str(
                        ConfigError(
                            "patch",
                            f"{len(patch)} keys + {len(carried)} carried forward",
                            f"at most {MAX_PATCH} keys for {target.device_id}",
                        )
                    )
                ]
            )
        sent = self._issue(target, full, expires_s, None)
        logger.info("command %s seq %d signed and stored", target.device_id, sent.seq)
        return Issued(sent, carried)

    def issue_update(self, target: Target, ref: SoftwareRef, expires_s: float) -> SentCommand:
        """Sign and store ``target``'s next command: install release ``ref``."""
        sent = self._issue(target, {}, expires_s, ref)
        logger.info(
            "update %s seq %d to %s signed and stored", target.device_id, sent.seq, ref.version
        )
        return sent

    def _issue(
        self,
        target: Target,
        patch: Mapping[str, str | None],
        expires_s: float,
        update: SoftwareRef | None,
    ) -> SentCommand:
        topic = Topics(target.device_id, target.fleet, self.prefix).command

        def make(seq: int, now: float) -> Command:
            return build(
                target.device_id,
                seq,
                now,
                patch,
                expires_s=expires_s,
                signer=self.signer,
                signer_url=self.signer_url,
                update=update,
            )

        return self.store.issue(target.device_id, target.fleet, topic, make)

    def publish(self, sent: SentCommand, publish: Publish) -> SentCommand:
        """Publish a stored command (retained) and record the broker's confirmation."""
        publish(sent.topic, sent.command.to_json())
        at = self.store.mark_published(sent.device_id, sent.seq)
        logger.info("command %s seq %d published on %s", sent.device_id, sent.seq, sent.topic)
        return SentCommand(sent.command, sent.fleet, sent.topic, at)

    def _overtaken(self, device_id: str, patch: Mapping[str, str | None]) -> dict[str, str | None]:
        """The keys of the newest command a new one would replace before the board read it."""
        last = self.store.last(device_id)
        if last is None or last.command.expires <= self.clock():
            return {}
        if self.answered(device_id, last.seq):
            return {}
        return {k: v for k, v in last.patch.items() if k not in patch}
