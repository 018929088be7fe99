"""What a model takes and produces: tasks, input specs and model specs (no TensorFlow)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from models.errors import SpecError


class Task(StrEnum):
    """What a model is trained to do."""

    CLASSIFY = "classify"  # label scores (softmax)
    REGRESS = "regress"  # values for declared outputs
    FORECAST = "forecast"  # next-step values of every input channel
    ANOMALY = "anomaly"  # one reconstruction-error score; a flag above a threshold

    @classmethod
    def parse(cls, value: str | Task, key: str = "task") -> Task:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise SpecError(f"expected one of {known}. Received: {key}={value!r}") from None


def _positive_ints(key: str, values: Sequence[int]) -> tuple[int, ...]:
    out = tuple(values)
    if not out or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in out):
        raise SpecError(f"expected a non-empty tuple of positive integers. Received: {key}={out!r}")
    return out


@dataclass(frozen=True)
class InputSpec:
    """One sample's input, without the batch dimension.

    ``shape`` is ``(features,)`` for tabular data, ``(window, channels)`` for time windows and
    ``(height, width, 1)`` for grayscale images. ``feature_names``/``units`` name the last axis.
    """

    shape: tuple[int, ...]
    feature_names: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    window: int | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _positive_ints("input.shape", self.shape))
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "units", tuple(self.units))
        channels = self.shape[-1]
        if self.feature_names and len(self.feature_names) != channels:
            raise SpecError(
                f"expected {channels} feature names (the last axis of shape {self.shape}). "
                f"Received: feature_names={self.feature_names!r}"
            )
        if self.units and len(self.units) != len(self.feature_names):
            raise SpecError(
                f"expected one unit per feature name ({len(self.feature_names)}). "
                f"Received: units={self.units!r}"
            )
        if self.window is not None and (len(self.shape) != 2 or self.shape[0] != self.window):
            raise SpecError(
                f"expected shape (window, channels) = ({self.window}, n) for a windowed input. "
                f"Received: shape={self.shape!r}"
            )
        if self.dtype != "float32":
            raise SpecError(f"expected dtype 'float32'. Received: dtype={self.dtype!r}")

    @classmethod
    def tabular(cls, names: Sequence[str], units: Sequence[str] = ()) -> InputSpec:
        return cls(shape=(len(names),), feature_names=tuple(names), units=tuple(units))

    @classmethod
    def windowed(cls, names: Sequence[str], window: int, units: Sequence[str] = ()) -> InputSpec:
        return cls(
            shape=(window, len(names)),
            feature_names=tuple(names),
            units=tuple(units),
            window=window,
        )

    @classmethod
    def image(cls, height: int, width: int) -> InputSpec:
        for key, v in (("height", height), ("width", width)):
            if not 8 <= v <= 100:
                raise SpecError(f"expected an image side from 8 to 100. Received: {key}={v!r}")
        return cls(shape=(height, width, 1), feature_names=("gray",), units=("",))

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "feature_names": list(self.feature_names),
            "units": list(self.units),
            "window": self.window,
            "dtype": self.dtype,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        return cls(
            shape=tuple(d["shape"]),
            feature_names=tuple(d.get("feature_names", ())),
            units=tuple(d.get("units", ())),
            window=d.get("window"),
            dtype=d.get("dtype", "float32"),
        )


@dataclass(frozen=True)
class ModelSpec:
    """A model family, a task and the shapes around it; enough to build the Keras model."""

    family: str
    task: Task
    input: InputSpec
    labels: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    width: int = 32
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task", Task.parse(self.task))
        object.__setattr__(self, "labels", tuple(self.labels))
        outputs = tuple(self.outputs)
        if self.task is Task.CLASSIFY and len(self.labels) < 2:
            raise SpecError(
                "expected at least two class labels for task 'classify'. "
                f"Received: labels={self.labels!r}"
            )
        if self.task is Task.FORECAST and not outputs:
            outputs = self.input.feature_names or tuple(
                f"y{i}" for i in range(self.input.shape[-1])
            )
        if self.task is Task.ANOMALY:
            outputs = ("score",)
        if self.task is Task.REGRESS and not outputs:
            raise SpecError(
                "expected at least one output name for task 'regress'. "
                f"Received: outputs={outputs!r}"
            )
        object.__setattr__(self, "outputs", outputs)
        if not isinstance(self.width, int) or not 4 <= self.width <= 512:
            raise SpecError(f"expected an integer from 4 to 512. Received: width={self.width!r}")

    @property
    def n_outputs(self) -> int:
        return len(self.labels) if self.task is Task.CLASSIFY else len(self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "task": self.task.value,
            "input": self.input.to_dict(),
            "labels": list(self.labels),
            "outputs": list(self.outputs),
            "width": self.width,
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        return cls(
            family=d["family"],
            task=Task.parse(d["task"]),
            input=InputSpec.from_dict(d["input"]),
            labels=tuple(d.get("labels", ())),
            outputs=tuple(d.get("outputs", ())),
            width=int(d.get("width", 32)),
            options=dict(d.get("options", {})),
        )
