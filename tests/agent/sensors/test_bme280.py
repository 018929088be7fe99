"""BME280 driver against a fake I2C bus serving a real chip's calibration and data bytes."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from agent.errors import ConfigError, SensorError
from agent.sensors.bme280 import (
    REG_CONFIG,
    REG_CTRL_HUM,
    REG_CTRL_MEAS,
    Bme280Driver,
)
from agent.sensors.bme280_compensation import Calibration, compensate

from .conftest import FakeClock

# Calibration bytes read from a real BME280 (0x88..0xA1, then 0xE1..0xE7) with raw ADC values
# and the datasheet integer results, as published in the bme280-rs driver's tests:
# t_fine 0x22391, pressure 0x018B663F (Q24.8 Pa), humidity 0x8399 (Q22.10 %RH).
REAL_CALIB_88 = bytes.fromhex("b16f2e6a3200e28f0ad7d00b751fc5fff9ffac260ad8bd10004b")
REAL_CALIB_E1 = bytes.fromhex("7701001220031e")
REAL_ADC_T, REAL_ADC_P, REAL_ADC_H = 0x84510, 0x4F570, 0x5EB4


def data_registers(adc_p: int, adc_t: int, adc_h: int) -> bytes:
    """The 8 bytes at 0xF7..0xFE for the given raw values (20-bit P and T, 16-bit H)."""
    p = [adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4]
    t = [adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4]
    return bytes([*p, *t, adc_h >> 8, adc_h & 0xFF])


class FakeBus:
    """Register file of one chip behind the smbus2.SMBus methods the driver uses."""

    def __init__(self, address: int = 0x76, chip_id: int = 0x60) -> None:
        self.address = address
        self.regs = bytearray(256)
        self.regs[0xD0] = chip_id
        self.regs[0x88 : 0x88 + 26] = REAL_CALIB_88
        self.regs[0xE1 : 0xE1 + 7] = REAL_CALIB_E1
        self.regs[0xF7:0xFF] = data_registers(REAL_ADC_P, REAL_ADC_T, REAL_ADC_H)
        self.writes: list[tuple[int, int]] = []
        self.fail_with: OSError | None = None
        self.closed = False

    def _check(self, addr: int) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        if addr != self.address:
            raise OSError(121, "Remote I/O error")

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        self._check(i2c_addr)
        return self.regs[register]

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        self._check(i2c_addr)
        return list(self.regs[register : register + length])

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        self._check(i2c_addr)
        self.regs[register] = value
        self.writes.append((register, value))

    def close(self) -> None:
        self.closed = True


def make(fake: FakeBus, clock: FakeClock, **options: Any) -> Bme280Driver:
    return Bme280Driver.from_config("room", options, clock=clock, bus_factory=lambda _n: fake)


def test_real_calibration_bytes_give_the_published_integer_results() -> None:
    cal = Calibration.from_bytes(REAL_CALIB_88, REAL_CALIB_E1)
    assert (cal.t1, cal.t2, cal.t3) == (0x6FB1, 0x6A2E, 0x32)
    assert (cal.p1, cal.p2, cal.p5, cal.p8) == (0x8FE2, -10486, -59, -10230)
    assert (cal.h1, cal.h2, cal.h3, cal.h4, cal.h5, cal.h6) == (0x4B, 0x177, 0, 0x120, 0x32, 0x1E)
    t_fine = cal.t_fine(REAL_ADC_T)
    assert t_fine == 0x22391
    assert cal.pressure(REAL_ADC_P, t_fine) == 0x018B663F
    assert cal.humidity(REAL_ADC_H, t_fine) == 0x8399


def test_bmp280_datasheet_worked_example() -> None:
    # Bosch BMP280 datasheet, section 3.12: same T/P formulas as the BME280.
    calib = struct.pack(
        "<HhhHhhhhhhhh",
        27504,
        26435,
        -1000,
        36477,
        -10685,
        3024,
        2855,
        140,
        -7,
        15500,
        -14600,
        6000,
    ) + bytes(2)
    cal = Calibration.from_bytes(calib, bytes(7))
    t_fine = cal.t_fine(519888)
    assert t_fine == 128422
    assert cal.temperature(t_fine) == 2508  # 25.08 °C
    assert cal.pressure(415148, t_fine) / 256 == pytest.approx(100653.27, abs=0.05)  # Pa


def test_read_returns_compensated_values(clock: FakeClock) -> None:
    bus = FakeBus()
    driver = make(bus, clock)
    [reading] = driver.read()
    assert reading.sensor == "room" and reading.ts == clock.now and reading.label is None
    assert reading.values["temp_c"] == pytest.approx(27.38, abs=0.005)
    assert reading.values["pressure_hpa"] == pytest.approx(0x018B663F / 256 / 100, abs=1e-9)
    assert reading.values["humidity_pct"] == pytest.approx(0x8399 / 1024, abs=1e-9)
    assert (
        compensate(
            Calibration.from_bytes(REAL_CALIB_88, REAL_CALIB_E1), REAL_ADC_T, REAL_ADC_P, REAL_ADC_H
        )[0]
        == 27.38
    )
    for feature in driver.features:
        assert feature.contains(reading.values[feature.name])


def test_configures_normal_mode_once_in_sleep_first(clock: FakeClock) -> None:
    bus = FakeBus(address=0x77)
    driver = make(
        bus, clock, address="0x77", oversampling_pressure=4, iir_filter=0, standby_ms=1000
    )
    driver.read()
    driver.read()
    assert bus.writes == [
        (REG_CTRL_MEAS, (2 << 5) | (3 << 2) | 0b00),
        (REG_CONFIG, 5 << 5),
        (REG_CTRL_HUM, 1),
        (REG_CTRL_MEAS, (2 << 5) | (3 << 2) | 0b11),
    ]


def test_wrong_chip_id_names_the_expected_one(clock: FakeClock) -> None:
    bus = FakeBus(chip_id=0x58)
    with pytest.raises(SensorError, match=r"expected chip id 0x60.*Received: 0x58.*BMP280"):
        make(bus, clock).read()
    assert bus.closed


def test_bus_errors_become_sensor_errors_and_recover(clock: FakeClock) -> None:
    bus = FakeBus()
    driver = make(bus, clock)
    driver.read()
    bus.fail_with = OSError(121, "Remote I/O error")
    with pytest.raises(SensorError, match="Remote I/O error"):
        driver.read()
    bus.fail_with = None
    assert len(driver.read()) == 1  # re-opened, re-checked, re-configured


def test_no_measurement_yet_returns_nothing(clock: FakeClock) -> None:
    bus = FakeBus()
    bus.regs[0xF7:0xFF] = bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])  # reset values
    assert make(bus, clock).read() == []


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"address": 0x40}, "sensors.room.address"),
        ({"bus": -1}, "sensors.room.bus"),
        ({"oversampling_humidity": 3}, "sensors.room.oversampling_humidity"),
        ({"standby_ms": 7}, "sensors.room.standby_ms"),
        ({"adress": 0x76}, "sensors.room.adress"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str, clock: FakeClock) -> None:
    with pytest.raises(ConfigError) as info:
        make(FakeBus(), clock, **options)
    assert info.value.key == key
