"""Board facts from a fake device tree / sysfs (the only thing faked: the hardware)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent.health.facts import BoardFacts, SystemSampler, decode_throttled, parse_throttled
from agent.health.schema import Health, Throttling
from tests.agent.health.helpers import fake_pi, set_temp, set_throttled


def test_decode_throttled_names_now_and_occurred_bits() -> None:
    t = decode_throttled(0x50005)  # under-voltage + throttled now; both have occurred
    assert t == Throttling(
        under_voltage=True,
        freq_capped=False,
        throttled=True,
        soft_temp_limit=False,
        under_voltage_occurred=True,
        freq_capped_occurred=False,
        throttled_occurred=True,
        soft_temp_limit_occurred=False,
    )
    assert decode_throttled(0) == Throttling(*([False] * 8))
    assert decode_throttled(0x80008).soft_temp_limit and decode_throttled(0x80008).any_now
    assert decode_throttled(0x20000).freq_capped_occurred and not decode_throttled(0x20000).any_now


@pytest.mark.parametrize(
    ("text", "bits"),
    [("throttled=0x50005\n", 0x50005), ("50005\n", 0x50005), ("0\n", 0), ("garbage!", None)],
)
def test_parse_throttled_reads_vcgencmd_and_sysfs_forms(text: str, bits: int | None) -> None:
    assert parse_throttled(text) == bits


def test_pi_facts_from_a_fake_tree(tmp_path: Path) -> None:
    root = fake_pi(tmp_path, temp_c=61.5, throttled=0x50000)
    facts = BoardFacts(root, vcgencmd="")
    assert facts.model() == "Raspberry Pi 4 Model B Rev 1.5"
    assert facts.serial() == "10000000abcdef12"
    assert facts.is_pi()
    assert facts.cpu_temp_c() == 61.5
    throttling = facts.throttling()
    assert throttling is not None
    assert throttling.under_voltage_occurred and throttling.throttled_occurred
    assert not throttling.any_now
    set_throttled(root, 0x4)
    set_temp(root, 70.0)
    assert facts.throttling() == decode_throttled(0x4)
    assert facts.cpu_temp_c() == 70.0


def test_devicetree_under_sys_firmware_is_used_when_proc_is_absent(tmp_path: Path) -> None:
    base = tmp_path / "sys/firmware/devicetree/base"
    base.mkdir(parents=True)
    (base / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert BoardFacts(tmp_path, vcgencmd="").model() == "Raspberry Pi 5 Model B Rev 1.0"


def test_non_pi_hardware_gives_none_not_errors(tmp_path: Path) -> None:
    facts = BoardFacts(tmp_path, vcgencmd="")
    assert (facts.model(), facts.serial(), facts.cpu_temp_c(), facts.throttling()) == (
        None,
        None,
        None,
        None,
    )
    assert not facts.is_pi()


def test_vcgencmd_is_the_fallback_when_sysfs_lacks_get_throttled(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def firmware(argv: list[str]) -> str:  # the firmware's answer: the hardware edge
        calls.append(argv)
        return "throttled=0x80008\n"

    facts = BoardFacts(tmp_path, vcgencmd="/usr/bin/vcgencmd", runner=firmware)
    assert facts.throttling() == decode_throttled(0x80008)
    assert calls == [["/usr/bin/vcgencmd", "get_throttled"]]


def test_a_failing_vcgencmd_means_no_flags(tmp_path: Path) -> None:
    def broken(argv: list[str]) -> str:
        raise subprocess.CalledProcessError(255, argv, "VCHI initialization failed")

    assert BoardFacts(tmp_path, vcgencmd="vcgencmd", runner=broken).throttling() is None


def test_unreadable_thermal_file_is_none(tmp_path: Path) -> None:
    root = fake_pi(tmp_path)
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("not a number\n")
    assert BoardFacts(root, vcgencmd="").cpu_temp_c() is None


def test_system_sample_fits_the_health_schema() -> None:
    sample = SystemSampler().sample()
    health = Health.validate({**sample, "seq": 1, "ts": 1.0, "uptime_s": 0.0})
    assert health.memory.total_mb > 0
    assert 0 < health.rss_mb < health.memory.total_mb
