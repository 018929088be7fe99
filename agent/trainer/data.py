"""Turn the local store into training and validation arrays for a model spec.

Numpy only (no TensorFlow), so it is testable without the trainer. Validation is the newest
``val_fraction`` of the rows: the model is always judged on data newer than it trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.errors import AgentError
from agent.store.base import Store
from models.spec import ModelSpec, Task

MIN_EXAMPLES = 20


class NoDataError(AgentError):
    """The store holds too little usable data for this model."""


@dataclass(frozen=True)
class LocalData:
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_val: np.ndarray
    y_val: np.ndarray | None
    skipped_labels: int = 0

    @property
    def examples(self) -> int:
        return len(self.x_train)


def load(
    store: Store, spec: ModelSpec, *, val_fraction: float = 0.2, limit: int | None = None
) -> LocalData:
    """Read what ``spec`` needs from ``store``; raise ``NoDataError`` when there is too little."""
    names = spec.input.feature_names
    if not names:
        raise NoDataError(
            f"expected a model whose inputs are named store features. Received: "
            f"family={spec.family!r} with unnamed inputs (images are not trained from the store)"
        )
    window = spec.input.window
    skipped = 0
    y: np.ndarray | None
    if spec.task is Task.CLASSIFY:
        ds = store.dataset(names, window=window, labels=True, limit=limit)
        labels = ds.labels if ds.labels is not None else np.array([], dtype=str)
        index = {name: i for i, name in enumerate(spec.labels)}
        keep = np.array([str(v) in index for v in labels], dtype=bool)
        skipped = int((~keep).sum())
        x = ds.x[keep]
        y = np.array([index[str(v)] for v in labels[keep]], dtype=np.int32)
    elif spec.task is Task.FORECAST:
        ds = store.dataset(names, window=window, horizon=1, limit=limit)
        x, y = ds.x, ds.y
    elif spec.task is Task.REGRESS:
        outputs = spec.outputs
        ds = store.dataset((*names, *outputs), window=window, limit=limit)
        n_in = len(names)
        x, y = ds.x[..., :n_in], ds.x[..., n_in:]
        if window is not None:
            y = y[:, -1, :]
    else:
        ds = store.dataset(names, window=window, limit=limit)
        x, y = ds.x, None
    if len(x) < MIN_EXAMPLES:
        raise NoDataError(
            f"expected at least {MIN_EXAMPLES} usable examples of {list(names)} in the local "
            "store. "
            f"Received: {len(x)} (skipped {skipped} with unknown labels)"
        )
    n_val = max(1, int(len(x) * val_fraction))
    split = len(x) - n_val
    return LocalData(
        x_train=x[:split].astype(np.float32),
        y_train=None if y is None else y[:split],
        x_val=x[split:].astype(np.float32),
        y_val=None if y is None else y[split:],
        skipped_labels=skipped,
    )
