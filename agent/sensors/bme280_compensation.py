"""Bosch BME280 calibration parsing and the datasheet's integer compensation formulas.

Straight from the BME280 datasheet (BST-BME280-DS002), section 4.2.2 (trimming parameter
readout) and section 4.2.3 / 8.2 (``BME280_compensate_T_int32``, ``BME280_compensate_P_int64``,
``bme280_compensate_H_int32``). Python integers never overflow and ``>>`` is arithmetic like
the reference C, so the only care needed is C's truncating division (:func:`_cdiv`).
"""

from __future__ import annotations

from dataclasses import dataclass

CALIB_00_REG = 0x88  # 0x88..0xA1: T1..T3, P1..P9, (0xA0 unused), H1
CALIB_00_LEN = 26
CALIB_26_REG = 0xE1  # 0xE1..0xE7: H2..H6
CALIB_26_LEN = 7


def _u16(data: bytes, i: int) -> int:
    return data[i] | (data[i + 1] << 8)


def _s16(data: bytes, i: int) -> int:
    value = _u16(data, i)
    return value - 0x10000 if value & 0x8000 else value


def _s8(value: int) -> int:
    return value - 0x100 if value & 0x80 else value


def _cdiv(a: int, b: int) -> int:
    """Integer division truncating toward zero, as in C."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


@dataclass(frozen=True, slots=True)
class Calibration:
    """The factory trimming parameters ``dig_*`` of one chip."""

    t1: int
    t2: int
    t3: int
    p1: int
    p2: int
    p3: int
    p4: int
    p5: int
    p6: int
    p7: int
    p8: int
    p9: int
    h1: int
    h2: int
    h3: int
    h4: int
    h5: int
    h6: int

    @classmethod
    def from_bytes(cls, calib00: bytes, calib26: bytes) -> Calibration:
        """Parse the 26 bytes at 0x88..0xA1 and the 7 bytes at 0xE1..0xE7."""
        if len(calib00) != CALIB_00_LEN or len(calib26) != CALIB_26_LEN:
            raise ValueError(
                f"expected {CALIB_00_LEN} + {CALIB_26_LEN} calibration bytes. "
                f"Received: {len(calib00)} + {len(calib26)}"
            )
        a, e = calib00, calib26
        return cls(
            t1=_u16(a, 0),
            t2=_s16(a, 2),
            t3=_s16(a, 4),
            p1=_u16(a, 6),
            p2=_s16(a, 8),
            p3=_s16(a, 10),
            p4=_s16(a, 12),
            p5=_s16(a, 14),
            p6=_s16(a, 16),
            p7=_s16(a, 18),
            p8=_s16(a, 20),
            p9=_s16(a, 22),
            h1=a[25],
            h2=_s16(e, 0),
            h3=e[2],
            h4=(_s8(e[3]) << 4) | (e[4] & 0x0F),
            h5=(_s8(e[5]) << 4) | (e[4] >> 4),
            h6=_s8(e[6]),
        )

    def t_fine(self, adc_t: int) -> int:
        """The fine temperature that pressure and humidity compensation depend on."""
        var1 = (((adc_t >> 3) - (self.t1 << 1)) * self.t2) >> 11
        var2 = (((((adc_t >> 4) - self.t1) * ((adc_t >> 4) - self.t1)) >> 12) * self.t3) >> 14
        return var1 + var2

    def temperature(self, t_fine: int) -> int:
        """Temperature in 0.01 °C (5123 means 51.23 °C)."""
        return (t_fine * 5 + 128) >> 8

    def pressure(self, adc_p: int, t_fine: int) -> int:
        """Pressure in Pa as Q24.8 (24674867 means 24674867/256 = 96386.2 Pa)."""
        var1 = t_fine - 128000
        var2 = var1 * var1 * self.p6
        var2 = var2 + ((var1 * self.p5) << 17)
        var2 = var2 + (self.p4 << 35)
        var1 = ((var1 * var1 * self.p3) >> 8) + ((var1 * self.p2) << 12)
        var1 = (((1 << 47) + var1) * self.p1) >> 33
        if var1 == 0:
            return 0  # avoid a division by zero, as the datasheet does
        p = 1048576 - adc_p
        p = _cdiv(((p << 31) - var2) * 3125, var1)
        var1 = (self.p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (self.p8 * p) >> 19
        return ((p + var1 + var2) >> 8) + (self.p7 << 4)

    def humidity(self, adc_h: int, t_fine: int) -> int:
        """Relative humidity in %RH as Q22.10 (47445 means 47445/1024 = 46.333 %RH)."""
        v = t_fine - 76800
        v = ((((adc_h << 14) - (self.h4 << 20) - (self.h5 * v)) + 16384) >> 15) * (
            (
                (((((v * self.h6) >> 10) * (((v * self.h3) >> 11) + 32768)) >> 10) + 2097152)
                * self.h2
                + 8192
            )
            >> 14
        )
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * self.h1) >> 4)
        v = min(max(v, 0), 419430400)
        return v >> 12


def compensate(cal: Calibration, adc_t: int, adc_p: int, adc_h: int) -> tuple[float, float, float]:
    """(temperature °C, pressure hPa, humidity %RH) from the raw ADC values."""
    t_fine = cal.t_fine(adc_t)
    temp_c = cal.temperature(t_fine) / 100.0
    pressure_hpa = cal.pressure(adc_p, t_fine) / 256.0 / 100.0
    humidity_pct = cal.humidity(adc_h, t_fine) / 1024.0
    return temp_c, pressure_hpa, humidity_pct
