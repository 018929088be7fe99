"""Bosch BME280 temperature / humidity / pressure sensor on I2C (smbus2).

Options (all optional):

    bus                       I2C bus number, default 1 (``/dev/i2c-1`` on a Raspberry Pi)
    address                   0x76 (default) or 0x77
    oversampling_temperature  1, 2, 4, 8 or 16; default 2
    oversampling_pressure     default 16
    oversampling_humidity     default 1
    iir_filter                0 (off), 2, 4, 8 or 16; default 4
    standby_ms                0.5, 10, 20, 62.5, 125, 250, 500 or 1000; default 125

The chip runs in normal mode (it measures continuously every ``standby_ms``), so ``read()``
only fetches the latest result: nothing waits on the sensor. The bus is opened, the chip id
checked, the calibration read and the chip configured on the first ``read()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from agent.errors import SensorError
from agent.options import Options
from agent.sensors.base import Clock, DriverBase, Feature
from agent.sensors.bme280_compensation import (
    CALIB_00_LEN,
    CALIB_00_REG,
    CALIB_26_LEN,
    CALIB_26_REG,
    Calibration,
    compensate,
)
from agent.types import Reading

logger = logging.getLogger(__name__)

CHIP_ID = 0x60
REG_CHIP_ID = 0xD0
REG_CTRL_HUM = 0xF2
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_DATA = 0xF7  # press_msb .. hum_lsb, 8 bytes
MODE_SLEEP, MODE_NORMAL = 0b00, 0b11
_OVERSAMPLING = {1: 1, 2: 2, 4: 3, 8: 4, 16: 5}
_FILTER = {0: 0, 2: 1, 4: 2, 8: 3, 16: 4}
_STANDBY = {0.5: 0, 62.5: 1, 125: 2, 250: 3, 500: 4, 1000: 5, 10: 6, 20: 7}
_SKIPPED_20BIT = 0x80000  # data register reset value: no measurement yet

FEATURES = (
    Feature("temp_c", "°C", -40.0, 85.0),
    Feature("humidity_pct", "%", 0.0, 100.0),
    Feature("pressure_hpa", "hPa", 300.0, 1100.0),
)


class I2CBus(Protocol):
    """The part of ``smbus2.SMBus`` the driver uses; tests serve register bytes through it."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def close(self) -> None: ...


def _open_smbus(bus: int) -> I2CBus:
    from smbus2 import SMBus

    smbus: I2CBus = SMBus(bus)
    return smbus


class Bme280Driver(DriverBase):
    """Reads compensated temperature, humidity and pressure from one BME280."""

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        bus: int,
        address: int,
        ctrl_hum: int,
        ctrl_meas: int,
        config: int,
        bus_factory: Callable[[int], I2CBus] = _open_smbus,
    ) -> None:
        super().__init__(name, FEATURES, clock)
        self._bus_number = bus
        self._address = address
        self._ctrl_hum, self._ctrl_meas, self._config = ctrl_hum, ctrl_meas, config
        self._bus_factory = bus_factory
        self._bus: I2CBus | None = None
        self._cal: Calibration | None = None

    @classmethod
    def from_config(
        cls,
        name: str,
        options: Mapping[str, Any],
        *,
        clock: Clock,
        bus_factory: Callable[[int], I2CBus] = _open_smbus,
    ) -> Bme280Driver:
        opts = Options(f"sensors.{name}", options)
        bus = opts.get_int("bus", 1, low=0)
        address = opts.get_int("address", 0x76, choices=(0x76, 0x77))
        osrs_t = opts.get_int("oversampling_temperature", 2, choices=tuple(_OVERSAMPLING))
        osrs_p = opts.get_int("oversampling_pressure", 16, choices=tuple(_OVERSAMPLING))
        osrs_h = opts.get_int("oversampling_humidity", 1, choices=tuple(_OVERSAMPLING))
        iir = opts.get_int("iir_filter", 4, choices=tuple(_FILTER))
        standby = opts.get_float("standby_ms", 125)
        if standby not in _STANDBY:
            raise opts.error("standby_ms", standby, "one of " + ", ".join(map(str, _STANDBY)))
        opts.done()
        ctrl_meas = (_OVERSAMPLING[osrs_t] << 5) | (_OVERSAMPLING[osrs_p] << 2) | MODE_NORMAL
        config = (_STANDBY[standby] << 5) | (_FILTER[iir] << 2)
        return cls(
            name,
            clock=clock,
            bus=bus,
            address=address,
            ctrl_hum=_OVERSAMPLING[osrs_h],
            ctrl_meas=ctrl_meas,
            config=config,
            bus_factory=bus_factory,
        )

    def read(self) -> list[Reading]:
        try:
            bus, cal = self._ready()
            d = bus.read_i2c_block_data(self._address, REG_DATA, 8)
        except OSError as exc:  # smbus2 raises OSError (e.g. errno 121, Remote I/O error)
            self._drop_bus()
            msg = f"sensor {self.name}: I2C transfer failed on {self._where()}: {exc}"
            raise SensorError(msg) from exc
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        if adc_t == _SKIPPED_20BIT:
            logger.debug("sensor %s: no measurement completed yet", self.name)
            return []
        temp_c, pressure_hpa, humidity_pct = compensate(cal, adc_t, adc_p, adc_h)
        values = {"temp_c": temp_c, "humidity_pct": humidity_pct, "pressure_hpa": pressure_hpa}
        return [self._reading(values)]

    def _ready(self) -> tuple[I2CBus, Calibration]:
        if self._bus is not None and self._cal is not None:
            return self._bus, self._cal
        bus = self._bus = self._bus_factory(self._bus_number)
        chip_id = bus.read_byte_data(self._address, REG_CHIP_ID)
        if chip_id != CHIP_ID:
            self._drop_bus()
            raise SensorError(
                f"sensor {self.name}: expected chip id 0x{CHIP_ID:02x} (BME280) on "
                f"{self._where()}. Received: 0x{chip_id:02x}"
                + (" (a BMP280, which has no humidity sensor)" if chip_id == 0x58 else "")
            )
        calib00 = bytes(bus.read_i2c_block_data(self._address, CALIB_00_REG, CALIB_00_LEN))
        calib26 = bytes(bus.read_i2c_block_data(self._address, CALIB_26_REG, CALIB_26_LEN))
        cal = self._cal = Calibration.from_bytes(calib00, calib26)
        # config is only written reliably in sleep mode; ctrl_hum takes effect on ctrl_meas.
        bus.write_byte_data(self._address, REG_CTRL_MEAS, self._ctrl_meas & ~0b11 | MODE_SLEEP)
        bus.write_byte_data(self._address, REG_CONFIG, self._config)
        bus.write_byte_data(self._address, REG_CTRL_HUM, self._ctrl_hum)
        bus.write_byte_data(self._address, REG_CTRL_MEAS, self._ctrl_meas)
        logger.info("sensor %s: BME280 ready on %s", self.name, self._where())
        return bus, cal

    def _where(self) -> str:
        return f"bus {self._bus_number} address 0x{self._address:02x}"

    def _drop_bus(self) -> None:
        bus, self._bus, self._cal = self._bus, None, None
        if bus is not None:
            try:
                bus.close()
            except OSError:
                logger.debug("sensor %s: closing the I2C bus failed", self.name, exc_info=True)

    def close(self) -> None:
        self._drop_bus()
