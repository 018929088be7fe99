"""``training.png`` (loss and metric per round) and ``confusion.png`` (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coordinator.federation.history import RunHistory


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training(history: RunHistory, path: Path, metric_label: str = "metric") -> None:
    plt = _pyplot()
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    for source, style in (("train", "o-"), ("evaluate", "s--"), ("central", "^-")):
        groups = [(r.round, getattr(r, source)) for r in history.rounds]
        pts = [(n, group) for n, group in groups if "loss" in group and "metric" in group]
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ax_loss.plot(xs, [p[1]["loss"] for p in pts], style, label=source)
        ax_metric.plot(xs, [p[1]["metric"] for p in pts], style, label=source)
    initial = history.initial_central
    if "loss" in initial and "metric" in initial:
        ax_loss.plot([0], [initial["loss"]], "k^")
        ax_metric.plot([0], [initial["metric"]], "k^")
    ax_loss.set(title="loss per round", xlabel="round", ylabel="loss")
    if all(min(line.get_ydata()) > 0 for line in ax_loss.get_lines()):
        ax_loss.set(yscale="log", title="loss per round (log scale)")
    ax_metric.set(title=f"{metric_label} per round", xlabel="round", ylabel=metric_label)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_metric):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(f"run {history.run_id} ({history.strategy})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion(matrix: np.ndarray, labels: tuple[str, ...], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.2 * len(labels) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (central validation, final model)")
    top = matrix.max() or 1
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            color = "white" if matrix[i, j] > top / 2 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
