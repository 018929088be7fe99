"""Registry of compact model families: config name -> family.

``get(name)`` works without TensorFlow (so configs can be checked on a board); a family's
``build(spec)`` imports Keras and returns an uncompiled ``keras.Model``.

| family        | input shape        | tasks                      | parameters (defaults)          |
|---------------|--------------------|----------------------------|--------------------------------|
| `mlp`         | (features,)        | classify, regress          | ~1.5k (5 features, width 32)   |
| `cnn1d`       | (window, channels) | classify, regress, forecast| ~9k (32 x 5, width 32)         |
| `tiny_cnn`    | (height, width, 1) | classify, regress          | ~7k (8x8 .. 100x100, width 32) |
| `autoencoder` | any                | anomaly                    | ~1k (5 features, width 32)     |

`benchmarks/models.py` prints the exact counts; `width` scales them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from models.errors import SpecError
from models.spec import ModelSpec, Task

if TYPE_CHECKING:
    import keras


class ModelFamily(Protocol):
    """What a model family offers: its name, the tasks it supports and a builder."""

    @property
    def name(self) -> str: ...

    @property
    def tasks(self) -> frozenset[Task]: ...

    def check(self, spec: ModelSpec) -> None: ...

    def build(self, spec: ModelSpec) -> keras.Model: ...


@dataclass(frozen=True)
class _Family:
    name: str
    tasks: frozenset[Task]
    ranks: frozenset[int]
    description: str
    module: str

    def check(self, spec: ModelSpec) -> None:
        if spec.task not in self.tasks:
            known = ", ".join(sorted(t.value for t in self.tasks))
            raise SpecError(
                f"family '{self.name}' supports tasks {known}. Received: task={spec.task.value!r}"
            )
        if len(spec.input.shape) not in self.ranks:
            raise SpecError(
                f"family '{self.name}' expects an input of rank {sorted(self.ranks)} "
                f"({self.description}). Received: input.shape={spec.input.shape!r}"
            )

    def build(self, spec: ModelSpec) -> keras.Model:
        self.check(spec)
        builder: Callable[[ModelSpec], keras.Model] = importlib.import_module(self.module).build
        return builder(spec)


_FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        _Family(
            "mlp",
            frozenset({Task.CLASSIFY, Task.REGRESS}),
            frozenset({1}),
            "tabular rows: (features,)",
            "models.families.mlp",
        ),
        _Family(
            "cnn1d",
            frozenset({Task.CLASSIFY, Task.REGRESS, Task.FORECAST}),
            frozenset({2}),
            "multichannel time windows: (window, channels)",
            "models.families.cnn1d",
        ),
        _Family(
            "tiny_cnn",
            frozenset({Task.CLASSIFY, Task.REGRESS}),
            frozenset({3}),
            "grayscale images: (height, width, 1), sides 8 to 100",
            "models.families.tiny_cnn",
        ),
        _Family(
            "autoencoder",
            frozenset({Task.ANOMALY}),
            frozenset({1, 2}),
            "rows or windows scored by reconstruction error",
            "models.families.autoencoder",
        ),
    )
}


def names() -> Iterable[str]:
    return tuple(_FAMILIES)


def get(name: str) -> ModelFamily:
    """Return the family registered as ``name``; the error lists the known ones."""
    try:
        return _FAMILIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_FAMILIES))
        raise SpecError(
            f"Could not interpret model family: expected one of {known}. Received: family={name!r}"
        ) from None


def build(spec: ModelSpec) -> keras.Model:
    """Build the Keras model for ``spec`` with its family's builder."""
    return get(spec.family).build(spec)
