"""The store interface shared by the SQLite store and the in-memory store.

Callers (the sampler, the inference server, the trainer) depend on :class:`Store` only.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt

from agent.types import Sample

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """What :meth:`Store.dataset` returns.

    ``x`` is ``(N, F)`` rows, or ``(N, window, F)`` windows, float32, features in the order asked.
    ``y`` is the forecast target ``(N, F)`` (the row ``horizon`` rows after each row / window's
    last row) or ``None``. ``labels`` is ``(N,)`` strings (the last row's label) or ``None``.
    ``ts`` is ``(N,)`` float64: the timestamp of each row / window's last row.
    """

    x: FloatArray
    y: FloatArray | None
    labels: npt.NDArray[np.str_] | None
    ts: npt.NDArray[np.float64]
    features: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True, slots=True)
class SampleLabel:
    """A label for the stored sample at exactly ``ts`` (see :meth:`Store.label_samples`).

    ``label`` goes to the row's label column, what ``dataset(labels=True)`` returns (a class
    name, for classification); ``None`` leaves the column as it is. ``values`` are merged into
    the row's feature values (regression targets: ``dataset((*inputs, *outputs))`` then finds
    them), replacing a value of the same name.
    """

    ts: float
    label: str | None = None
    values: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Cheap facts about the store. ``feature_counts`` is filled only on request (it scans)."""

    rows: int
    bytes: int
    oldest_ts: float | None
    newest_ts: float | None
    feature_counts: Mapping[str, int] | None = None
    path: Path | None = None


class Store(abc.ABC):
    """A bounded, crash-safe local store of :class:`Sample` rows.

    Missing-feature policy (all readers): a row that lacks a requested feature, or holds a
    non-finite value for it, is skipped; nothing is invented. Windows are built from consecutive
    kept rows; pass ``max_gap_s`` to :meth:`dataset` to drop windows that span a longer gap.
    """

    @abc.abstractmethod
    def append_many(self, samples: Iterable[Sample]) -> int:
        """Append samples in one transaction; return how many were written."""

    def append(self, sample: Sample) -> None:
        """Append one sample (prefer :meth:`append_many` for batches)."""
        self.append_many((sample,))

    @abc.abstractmethod
    def dataset(
        self,
        features: Sequence[str],
        *,
        window: int | None = None,
        stride: int = 1,
        horizon: int | None = None,
        labels: bool = False,
        since: float | None = None,
        limit: int | None = None,
        max_gap_s: float | None = None,
    ) -> Dataset:
        """Rows or windows for training, oldest first.

        ``since`` keeps rows with ``ts >= since``; ``limit`` keeps at most that many of the most
        recent rows that carry every requested feature. ``stride`` steps between window ends.
        ``horizon=h`` adds ``y``: the features of the row ``h`` rows after each window's last
        row. ``labels=True`` adds the last row's label and drops windows whose last row has none.
        """

    def latest_window(self, features: Sequence[str], window: int) -> FloatArray | None:
        """The newest ``window`` rows carrying every feature as ``(window, F)``, oldest first.

        Looks only among the newest ``frames.scan_rows(window)`` stored rows, so it stays
        O(window) on the inference hot path; ``None`` when they hold fewer complete rows
        (not enough data yet, or a feature stopped arriving) rather than a stale window.
        """
        found = self.latest_window_at(features, window)
        return None if found is None else found[0]

    @abc.abstractmethod
    def latest_window_at(
        self, features: Sequence[str], window: int
    ) -> tuple[FloatArray, float] | None:
        """:meth:`latest_window` and the ``ts`` of its last (newest) row.

        The prediction log keeps that time, so a label for the prediction can be set on the
        reading it was computed from (:meth:`label_samples`).
        """

    def latest(self, features: Sequence[str]) -> FloatArray | None:
        """The newest row carrying every feature as ``(F,)``, or ``None``."""
        rows = self.latest_window(features, 1)
        return None if rows is None else rows[0]

    @abc.abstractmethod
    def match_samples(self, stamps: Sequence[float], *, tolerance_s: float) -> list[float | None]:
        """For each time ``t``, the ``ts`` of the newest stored sample in ``[t - tolerance_s, t]``,
        or ``None`` when no sample is that close. One indexed lookup per time; writes nothing.
        """

    @abc.abstractmethod
    def label_samples(self, labels: Sequence[SampleLabel]) -> int:
        """Label the samples stored at exactly each ``labels[i].ts``, in one transaction.

        Where several samples share a ``ts`` the newest written one is labelled. A ``ts`` that
        matches no stored sample (retention took it) is skipped; returns how many samples were
        labelled. A bad label (values beyond float32) raises ``StoreError`` and writes nothing.
        """

    @abc.abstractmethod
    def stats(self, *, per_feature: bool = False) -> StoreStats:
        """Row count, size, time span; per-feature counts (a full scan) when asked."""

    @abc.abstractmethod
    def features(self) -> frozenset[str]:
        """Every feature name ever stored (retention does not forget names)."""

    @abc.abstractmethod
    def enforce_retention(self) -> int:
        """Apply the row, age and byte bounds now; return how many rows were deleted."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources. Idempotent; any later call raises ``StoreError``."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
