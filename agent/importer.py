"""``orchard-agent import-csv``: recorded readings from a CSV into the board's own store.

For history recorded before the agent ran (a logger's export, a data set to start from, the
demo's per-device share): every column but ``label`` and ``ts`` is a feature; ``ts`` (Unix
seconds) is kept when present, otherwise rows are stamped ``step_s`` apart ending ``step_s``
before now. The whole file is checked first: a cell that is not a finite number, a row of the
wrong length or an unreadable time is an :class:`ImportError_` naming the row, the column and
the value, and nothing is written. Rows are appended in one transaction.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from pathlib import Path

from agent.errors import AgentError
from agent.store.base import Store
from agent.types import Sample

LABEL, TS = "label", "ts"


class ImportError_(AgentError):
    """A CSV that cannot be imported; names the row, the column and the value."""


def read_samples(
    path: Path, step_s: float = 60.0, clock: Callable[[], float] = time.time
) -> list[Sample]:
    """The rows of ``path`` as samples, or :class:`ImportError_` for the first bad cell."""
    if not (step_s > 0 and math.isfinite(step_s)):
        raise ImportError_(f"expected step_s to be a positive number. Received: step_s={step_s}")
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportError_(f"cannot read {path}: {exc}") from None
    if not rows:
        raise ImportError_(f"expected a CSV with a header row. Received: {path} is empty")
    header = [h.strip() for h in rows[0]]
    features = [h for h in header if h not in (LABEL, TS)]
    if not features:
        raise ImportError_(f"expected at least one feature column. Received: header {header}")
    body = rows[1:]
    end = clock() - step_s
    samples = []
    for n, row in enumerate(body, start=2):  # line numbers as an editor shows them
        if len(row) != len(header):
            raise ImportError_(
                f"{path} line {n}: expected {len(header)} cells. Received: {len(row)}"
            )
        cells = dict(zip(header, row, strict=True))
        values = {name: _number(path, n, name, cells[name]) for name in features}
        ts = _number(path, n, TS, cells[TS]) if TS in cells else end - (len(body) + 1 - n) * step_s
        label = cells.get(LABEL, "").strip() or None
        samples.append(Sample(ts=ts, values=values, label=label))
    return samples


def import_csv(store: Store, path: Path, step_s: float = 60.0) -> int:
    """Append the rows of ``path`` to ``store``; returns how many were written."""
    return store.append_many(read_samples(path, step_s))


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ImportError_(
            f"{path} line {line}: expected {column} to be a finite number. "
            f"Received: {column}={cell!r:.40}"
        )
    return value
