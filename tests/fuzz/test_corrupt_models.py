"""Damaged model bundles offered to a running agent through its inbox (the trainer's path).

Every candidate of :func:`corpus.must_refuse` is refused with a ``model_rejected`` event naming
why, while a client keeps getting HTTP 200 answers from the good model (same version, same
sha256) before, during and after. Seeded bit flips whose manifest agrees with the damaged file
are refused, or serve only if they still reproduce their own golden samples. The defects this
suite found elsewhere (events dropped, not counted, verification growing the server) are fixed
and kept here as regression tests.
"""

from __future__ import annotations

import ast
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.health.codec import MAX_STR
from models.manifest import MANIFEST_FILE, Manifest
from tests.agent.serve.bundles import Bundles
from tests.brokers import Broker
from tests.fuzz import corpus
from tests.fuzz.agent_process import AgentProcess, metric_samples
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

EVENT_LINE = re.compile(r" agent\.runner: event (?P<kind>\w+) (?P<data>\{.*\})$")


class Events:
    """The agent's ``event`` topic on the broker, as a subscriber sees it."""

    def __init__(self, broker: Broker, device_id: str) -> None:
        self.received: list[dict[str, Any]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311
        )
        self.client.on_message = lambda _c, _u, m: self.received.append(json.loads(m.payload))
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(f"orchard/v1/{device_id}/event", qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK from the broker"

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in list(self.received) if e["kind"] == kind]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def logged_events(agent: AgentProcess, kind: str) -> list[dict[str, Any]]:
    """Events as the agent logs them (every one, whatever MQTT could carry)."""
    out = []
    for line in agent.log().splitlines():
        m = EVENT_LINE.search(line)
        if m and m["kind"] == kind:
            out.append(ast.literal_eval(m["data"]))
    return out


class Prober(threading.Thread):
    """A client asking the agent for predictions over and over, recording every answer."""

    def __init__(self, agent: AgentProcess, features: list[float]) -> None:
        super().__init__(daemon=True)
        self.agent, self.body = agent, {"features": features}
        self.answers: Counter[tuple[int, str | None]] = Counter()
        self.failures: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with self.agent.client() as client:
            while not self._halt.wait(0.005):  # pacing only; stop() ends the loop
                try:
                    r = client.post("/api/predict", json=self.body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                version = r.json().get("model_version") if r.status_code == 200 else None
                self.answers[(r.status_code, version)] += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def serving(agent: AgentProcess) -> dict[str, Any]:
    with agent.client() as c:
        info: dict[str, Any] = c.get("/api/info").json()
    return {k: info[k] for k in ("name", "version", "sha256", "slot")}


def offer_all(agent: AgentProcess, candidates: list[corpus.Candidate]) -> None:
    for c in candidates:
        agent.offer(c.path, c.name)
    pending = lambda: [p for p in agent.inbox.iterdir() if not p.name.startswith(".")]  # noqa: E731
    wait_until(lambda: not pending(), 120, "the agent to take every candidate from its inbox")


def golden(bundle: Path) -> Manifest:
    return Manifest.load(bundle / MANIFEST_FILE)


@pytest.fixture(scope="module")
def sources(bundles: Bundles) -> corpus.Sources:
    return corpus.Sources(
        good=bundles("mlp", "classify", "float32", "1"),
        other_task=bundles("mlp", "regress", "float32", "1"),
        other_shape=bundles("cnn1d", "forecast", "float32", "1"),
        other_quantization=bundles("mlp", "classify", "int8", "1"),
    )


def start_agent(root: Path, broker: Broker, good: Path) -> tuple[AgentProcess, Events]:
    agent = AgentProcess(root, mqtt_port=broker.port).start()
    events = Events(broker, agent.device_id)
    assert agent.install(good, "good-1")["version"] == "1", agent.log()
    return agent, events


@pytest.fixture(scope="module")
def served(
    mosquitto: Broker, sources: corpus.Sources, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AgentProcess, Events]]:
    agent, events = start_agent(tmp_path_factory.mktemp("corrupt"), mosquitto, sources.good)
    yield agent, events
    events.close()
    agent.stop()


def test_corrupt_candidates_are_refused_and_the_good_model_keeps_serving(
    served: tuple[AgentProcess, Events], sources: corpus.Sources, tmp_path: Path
) -> None:
    agent, events = served
    candidates = corpus.must_refuse(sources, tmp_path)
    before = serving(agent)
    already = len(logged_events(agent, "model_rejected"))
    prober = Prober(agent, list(golden(sources.good).golden_inputs[0]))
    prober.start()
    try:
        offer_all(agent, candidates)
        seen = sum(prober.answers.values())
        wait_until(lambda: sum(prober.answers.values()) > seen + 20, 30, "answers after the corpus")
    finally:
        prober.stop()

    assert agent.alive(), agent.log()
    assert serving(agent) == before
    assert set(prober.answers) == {(200, "1")}, (prober.answers, prober.failures)
    assert not prober.failures
    rejected = logged_events(agent, "model_rejected")[already:]
    assert not logged_events(agent, "model_swapped")[1:], "a corrupt candidate was swapped in"
    by_name = {Path(e["candidate"]).name: e["reason"] for e in rejected}
    assert sorted(by_name) == sorted(c.name for c in candidates)
    for c in candidates:
        assert any(word in by_name[c.name] for word in c.why), (c.name, by_name[c.name])
    # the events MQTT can carry (strings up to MAX_STR, see the xfail below) reach the broker
    fits = lambda e: all(len(str(v)) <= MAX_STR for v in e.values())  # noqa: E731
    short = {Path(e["candidate"]).name for e in rejected if fits(e)}
    assert len(short) > len(candidates) // 2
    wait_until(
        lambda: short <= {Path(e["candidate"]).name for e in events.of("model_rejected")},
        10,
        "the rejection events on MQTT",
    )


def test_synced_bit_flips_are_refused_or_serve_their_own_golden_samples(
    mosquitto: Broker, sources: corpus.Sources, tmp_path: Path
) -> None:
    agent, events = start_agent(tmp_path / "agent", mosquitto, sources.good)
    try:
        candidates = corpus.synced_flips(sources, tmp_path / "corpus", count=12, seed=20260607)
        prober = Prober(agent, list(golden(sources.good).golden_inputs[0]))
        prober.start()
        try:
            offer_all(agent, candidates)
            seen = sum(prober.answers.values())
            wait_until(
                lambda: sum(prober.answers.values()) > seen + 20, 30, "answers after the flips"
            )
        finally:
            prober.stop()
        assert agent.alive(), agent.log()
        swapped = {e["version"] for e in logged_events(agent, "model_swapped")} - {"1"}
        rejected = {Path(e["candidate"]).name for e in logged_events(agent, "model_rejected")}
        by_version = {c.version: c for c in candidates}
        accepted = {by_version[v].name for v in swapped}
        assert accepted | rejected == {c.name for c in candidates}
        assert not accepted & rejected
        assert {v for status, v in prober.answers if status == 200} <= {"1", *swapped}
        assert {status for status, _ in prober.answers} == {200}, prober.answers
        # whatever serves now reproduces its own golden samples over HTTP
        now = serving(agent)
        bundle = sources.good if now["version"] == "1" else by_version[now["version"]].path
        m = golden(bundle)
        with agent.client() as client:
            r = client.post("/api/predict", json={"instances": [list(x) for x in m.golden_inputs]})
        assert r.status_code == 200 and r.json()["model_version"] == now["version"]
        got = [[res["scores"][label] for label in m.labels] for res in r.json()["result"]]
        np.testing.assert_allclose(got, m.golden_outputs, atol=m.golden_atol)
        print(f"synced flips: {len(rejected)} refused, {len(accepted)} inert and served")
    finally:
        events.close()
        agent.stop()


# -- defects this suite found in other modules, fixed there; kept as regression tests ----------


def test_every_rejection_reaches_mqtt_naming_why(
    served: tuple[AgentProcess, Events], sources: corpus.Sources, tmp_path: Path
) -> None:
    agent, events = served
    [candidate] = [
        c for c in corpus.must_refuse(sources, tmp_path) if c.name == "manifest-not-utf8"
    ]
    name = f"long-name-{uuid.uuid4().hex[:6]}-" + "n" * 200  # the reason quotes the path
    agent.offer(candidate.path, name)
    wait_until(lambda: not (agent.inbox / name).exists(), 30, "the agent to take the candidate")
    assert any(Path(e["candidate"]).name == name for e in logged_events(agent, "model_rejected"))
    wait_until(
        lambda: any(Path(e["candidate"]).name == name for e in events.of("model_rejected")),
        3,  # the broker is local: an event is there within milliseconds or not at all
        "the rejection event on MQTT",
    )


def test_rejections_are_counted_in_metrics(
    served: tuple[AgentProcess, Events], sources: corpus.Sources, tmp_path: Path
) -> None:
    agent, _ = served
    candidates = [c for c in corpus.must_refuse(sources, tmp_path) if c.name == "flipped-0"]
    name = f"counted-{uuid.uuid4().hex[:6]}"
    agent.offer(candidates[0].path, name)
    wait_until(lambda: not (agent.inbox / name).exists(), 30, "the agent to take the candidate")
    with agent.client() as client:
        samples = metric_samples(client.get("/metrics").text)
    assert samples.get(("orchard_model_events_total", (("event", "model_rejected"),)), 0) >= 1


def test_verifying_a_candidate_does_not_grow_the_serving_process(
    mosquitto: Broker, sources: corpus.Sources, tmp_path: Path
) -> None:
    agent, events = start_agent(tmp_path / "agent", mosquitto, sources.good)
    try:
        bomb = corpus.memory_bomb(sources, tmp_path / "corpus", rows=2**23)  # ~170 MB tensor
        baseline = agent.peak_rss_mb()
        agent.offer(bomb.path, bomb.name)
        wait_until(lambda: not (agent.inbox / bomb.name).exists(), 60, "the agent to take the bomb")
        grown = agent.peak_rss_mb() - baseline
        assert grown < 64, f"the agent's peak RSS grew by {grown:.0f} MB verifying a candidate"
    finally:
        events.close()
        agent.stop()
