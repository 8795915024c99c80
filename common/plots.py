"""The pictures every run writes: learning curves, confusion matrices and image grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Runs write files; no window is needed, and CI has no display.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def plot_learning_curves(history_csv: Path, out_path: Path) -> None:
    """Plots every metric of ``history.csv`` beside its validation counterpart, per epoch."""
    history = pd.read_csv(history_csv)
    if history.empty:
        return
    metrics = [
        name
        for name in history.columns
        if name not in ("epoch", "learning_rate") and not name.startswith("val_")
    ]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    epochs = history["epoch"] + 1
    for axis, metric in zip(axes[0], metrics):
        axis.plot(epochs, history[metric], label=f"train {metric}")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], label=f"validation {metric}")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], out_path: Path, title: str = ""
) -> None:
    """Draws a confusion matrix (rows: true class, columns: predicted) with counts in cells."""
    size = max(4.0, 0.6 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if title:
        axis.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            axis.text(
                column,
                row,
                int(matrix[row, column]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if matrix[row, column] > threshold else "black",
            )
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)


def plot_image_grid(images: np.ndarray, captions: Sequence[str], out_path: Path, columns: int = 8) -> None:
    """Saves a grid of grayscale images with a caption under each (e.g. ``true 4 / pred 9``)."""
    count = len(images)
    if count == 0:
        figure, axis = plt.subplots(figsize=(4, 1))
        axis.text(0.5, 0.5, "no images to show", ha="center", va="center")
        axis.axis("off")
    else:
        rows = (count + columns - 1) // columns
        figure, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.7 * rows))
        for index, axis in enumerate(np.atleast_1d(axes).ravel()):
            axis.axis("off")
            if index < count:
                axis.imshow(np.atleast_2d(np.squeeze(images[index])), cmap="gray")
                axis.set_title(captions[index], fontsize=7)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
