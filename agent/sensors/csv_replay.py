"""Replay a CSV file as a sensor: how recorded data sets enter a device.

Options:

    path          the CSV file (required); the first line is the header
    columns       feature columns to use; default: every column but the time and label ones
    ts_column     time column (Unix seconds or ISO 8601); default "ts" or "timestamp" if present
    label_column  default "label" (used when present)
    interval_s    row spacing when there is no time column, default 1.0
    speed         replay speed factor, default 1.0 (10 = ten times faster than recorded)
    loop          start again at the end, default false
    max_rows_per_read  default 100

Row ``i`` is due at ``t0 + (ts_i - ts_0) / speed`` on the injected clock, where ``t0`` is the
clock at the first ``read()``; each read returns the rows due by then, stamped with their due
time. Cells that are not numbers become NaN (the validator rejects such rows); rows with the
wrong number of cells or an unreadable time are counted in ``rejected()``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from agent.errors import SensorError
from agent.options import Options
from agent.sensors.base import Clock, DriverBase, Feature
from agent.types import Reading

logger = logging.getLogger(__name__)


class _Row(NamedTuple):
    data_ts: float
    values: dict[str, float]
    label: str | None


def parse_time(text: str) -> float:
    """Unix seconds from ``1700000000.5`` or ISO 8601 (naive times are taken as UTC)."""
    try:
        return float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text.strip())
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


class CsvReplayDriver(DriverBase):
    """Emits the rows of a CSV file when the clock says they are due."""

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        path: Path,
        header: Sequence[str],
        columns: Sequence[str],
        ts_column: str | None,
        label_column: str | None,
        interval_s: float,
        speed: float,
        loop: bool,
        max_rows: int,
    ) -> None:
        super().__init__(name, [Feature(c, "") for c in columns], clock)
        self._path, self._header = path, list(header)
        self._columns = [(c, self._header.index(c)) for c in columns]
        self._ts_index = None if ts_column is None else self._header.index(ts_column)
        self._label_index = None if label_column is None else self._header.index(label_column)
        self._interval, self._speed, self._loop, self._max_rows = interval_s, speed, loop, max_rows
        self._file: io.TextIOWrapper | None = None
        self._rows: Any = None  # csv reader over self._file
        self._t0: float | None = None
        self._first_ts: float | None = None
        self._offset = 0.0  # data seconds added per completed loop
        self._index = 0  # row index within the current pass
        self._last_ts = self._gap = 0.0
        self._next: _Row | None = None
        self.finished = False

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, clock: Clock) -> CsvReplayDriver:
        opts = Options(f"sensors.{name}", options)
        path = opts.get_path("path")
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                header = [h.strip() for h in next(csv.reader(handle), [])]
        except (OSError, UnicodeDecodeError) as exc:
            raise opts.error("path", str(path), f"a readable CSV file ({exc})") from exc
        ts_default = next((h for h in ("ts", "timestamp") if h in header), None)
        ts_column = opts.optional_str("ts_column") or ts_default
        label_column = opts.get_str("label_column", "label")
        if ts_column is not None and ts_column not in header:
            raise opts.error("ts_column", ts_column, f"a column of {path.name} ({header})")
        label = label_column if label_column in header else None
        others = [h for h in header if h and h not in (ts_column, label)]
        columns = opts.get_str_list("columns", others)
        missing = [c for c in columns if c not in header]
        if missing or not columns:
            raise opts.error("columns", columns, f"feature columns of {path.name} ({others})")
        interval = opts.get_float("interval_s", 1.0, positive=True)
        speed = opts.get_float("speed", 1.0, positive=True)
        loop = opts.get_bool("loop", False)
        max_rows = opts.get_int("max_rows_per_read", 100, low=1)
        opts.done()
        return cls(
            name,
            clock=clock,
            path=path,
            header=header,
            columns=columns,
            ts_column=ts_column,
            label_column=label,
            interval_s=interval,
            speed=speed,
            loop=loop,
            max_rows=max_rows,
        )

    def read(self) -> list[Reading]:
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        out: list[Reading] = []
        try:
            while len(out) < self._max_rows:
                row = self._next = self._next or self._next_row()
                if row is None or self._first_ts is None:
                    break
                due = self._t0 + (row.data_ts - self._first_ts + self._offset) / self._speed
                if due > now:
                    break
                out.append(self._reading(row.values, ts=due, label=row.label))
                self._next = None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SensorError(f"sensor {self.name}: reading {self._path} failed: {exc}") from exc
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._rows = None

    def _next_row(self) -> _Row | None:
        while not self.finished:
            if self._rows is None:
                self._file = self._path.open(newline="", encoding="utf-8-sig")
                self._rows = csv.reader(self._file)
                next(self._rows, None)  # header
            cells = next(self._rows, None)
            if cells is None:
                self._end_of_pass()
                continue
            if not any(c.strip() for c in cells):
                continue
            row = self._parse(cells)
            if row is not None:
                return row
        return None

    def _parse(self, cells: list[str]) -> _Row | None:
        if len(cells) != len(self._header):
            self._reject("bad_row")
            return None
        if self._ts_index is None:
            data_ts = self._index * self._interval
        else:
            try:
                data_ts = parse_time(cells[self._ts_index])
            except ValueError:
                self._reject("bad_timestamp")
                return None
        if self._first_ts is None:
            self._first_ts = data_ts
        if self._index > 0:
            self._gap = data_ts - self._last_ts
        self._index += 1
        self._last_ts = data_ts
        values = {name: _number(cells[i]) for name, i in self._columns}
        label = None
        if self._label_index is not None:
            label = cells[self._label_index].strip() or None
        return _Row(data_ts, values, label)

    def _end_of_pass(self) -> None:
        self.close()
        if not self._loop or self._index == 0 or self._first_ts is None:
            self.finished = True
            logger.info("sensor %s: replay of %s finished", self.name, self._path)
            return
        gap = self._gap if self._gap > 0 else self._interval
        self._offset += self._last_ts - self._first_ts + gap
        self._index = 0
