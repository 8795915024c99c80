"""The pictures every run writes: learning curves, confusion matrices and image grids.

Each picture says what data it shows (``title``, usually the run's ``data_source`` and size), so a
figure copied out of its run folder cannot be mistaken for one made on another dataset.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # Runs write files; no window is needed, and CI has no display.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

# Up to this many epochs each one is marked with a dot: a run of one or a few epochs is then
# visible (a single epoch is a line of zero length, which matplotlib draws as nothing).
MARKED_EPOCHS = 40


def wrap_title(text: str, figure_width: float, fontsize: float = 10) -> str:
    """``text`` broken into lines that fit a figure ``figure_width`` inches wide.

    Data sources are long (they hold paths and how the test split was made); a one-line title
    would be cut off at the figure's edge.
    """
    # An average character of the default sans-serif font is about 0.55 of its size in points;
    # 0.6 and a margin leave room for wide letters and the figure's padding.
    characters = max(20, int(figure_width * 72 / (0.6 * fontsize)) - 4)
    lines: list[str] = []
    for paragraph in text.splitlines():
        # Lines break after a semicolon where they can, so each part of a description
        # ("...; test = held-out 10% of train") stays whole, and inside a part only if it is too long.
        current = ""
        parts = paragraph.split("; ")
        for index, part in enumerate(parts):
            part = f"{part};" if index < len(parts) - 1 else part
            if current and len(current) + 1 + len(part) <= characters:
                current = f"{current} {part}"
                continue
            if current:
                lines.append(current)
            wrapped = textwrap.wrap(part, characters, break_on_hyphens=False) or [""]
            lines.extend(wrapped[:-1])
            current = wrapped[-1]
        if current:
            lines.append(current)
    return "\n".join(lines)


def plot_validation_curves(histories: dict[str, pd.DataFrame], out_path: Path) -> None:
    """One panel per validation metric (``val_loss``, ``val_accuracy``...), one line per run.

    Args:
        histories: each run's ``history.csv`` as a frame, by run name.
        out_path: the PNG to write.
    """
    metrics = sorted(
        {name for history in histories.values() for name in history.columns if name.startswith("val_")}
    )
    metrics = metrics or ["loss"]
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for name, history in histories.items():
            if metric in history:
                epochs = history["epoch"] + 1
                marker = "o" if len(history) <= MARKED_EPOCHS else None
                axis.plot(epochs, history[metric], marker=marker, markersize=3, label=name)
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"validation curves of {len(histories)} runs")
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)


def plot_learning_curves(history_csv: Path, out_path: Path, title: str = "") -> None:
    """Plots every metric of ``history.csv`` beside its validation counterpart, per epoch.

    Args:
        history_csv: the CSV that Keras' ``CSVLogger`` wrote.
        out_path: the PNG to write.
        title: what the model was trained on (e.g. the run's ``data_source``), shown on top.
    """
    history = pd.read_csv(history_csv)
    if history.empty:
        return
    metrics = [
        name
        for name in history.columns
        if name not in ("epoch", "learning_rate") and not name.startswith("val_")
    ]
    width = 5 * len(metrics)
    figure, axes = plt.subplots(1, len(metrics), figsize=(width, 3.8), squeeze=False)
    epochs = history["epoch"] + 1
    marker = "o" if len(history) <= MARKED_EPOCHS else None
    for axis, metric in zip(axes[0], metrics):
        series = [(f"train {metric}", history[metric])]
        if f"val_{metric}" in history:
            series.append((f"validation {metric}", history[f"val_{metric}"]))
        for label, values in series:
            axis.plot(epochs, values, marker=marker, markersize=4, label=label)
            if len(history) == 1:
                # One epoch has no curve: write its value beside the dot.
                axis.annotate(
                    f"{values.iloc[0]:.4g}",
                    (epochs.iloc[0], values.iloc[0]),
                    xytext=(8, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=9,
                )
        if len(history) <= 10:
            # A tick per epoch: the automatic ticks of a short run fall between epochs (0.5, 1.5).
            axis.set_xticks(epochs)
            axis.set_xlim(epochs.iloc[0] - 0.5, epochs.iloc[-1] + 0.5)
        else:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(wrap_title(title, width, 9), fontsize=9)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], out_path: Path, title: str = ""
) -> None:
    """Draws a confusion matrix (rows: true class, columns: predicted) with counts in cells, with
    scikit-learn's :class:`~sklearn.metrics.ConfusionMatrixDisplay`.

    ``title`` may hold several lines (the score, then the data and its size); long lines are wrapped.
    """
    size = max(5.0, 0.6 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(matrix, display_labels=list(class_names)).plot(
        ax=axis, cmap="Blues", colorbar=False, xticks_rotation=45, text_kw={"fontsize": 8}
    )
    # Rotated names end under their column rather than start there.
    plt.setp(axis.get_xticklabels(), ha="right")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if title:
        # Over the whole figure, not the axes: the class names on the left narrow the axes.
        figure.suptitle(wrap_title(title, size, 10), fontsize=10)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)


def plot_image_grid(
    images: np.ndarray,
    captions: Sequence[str],
    out_path: Path,
    columns: int = 8,
    title: str = "",
    empty_text: str = "no images to show",
) -> None:
    """Saves a grid of grayscale images with a caption over each (e.g. ``true 4 / pred 9 (87%)``).

    The figure is sized to the images it holds: a few images give a small figure, not a wide one
    of empty cells. Each image is about 1.8 inches (180 pixels) wide, large enough to see why a
    28x28 digit or a 48x48 face was misread.

    Args:
        images: N images, each (H, W) or (H, W, 1); uint8 images keep their 0-255 range instead
            of being stretched to full contrast one by one.
        captions: one per image; may hold a line break.
        out_path: the PNG to write.
        columns: the most images per row.
        title: shown over the grid (what the images are, out of how many, from what data).
        empty_text: said instead of the grid when there are no images.
    """
    count = len(images)
    if count == 0:
        width = 6.0
        figure, axis = plt.subplots(figsize=(width, 1.6))
        axis.text(0.5, 0.5, empty_text, ha="center", va="center", fontsize=12)
        axis.axis("off")
        if title:
            axis.set_title(wrap_title(title, width, 10), fontsize=10)
    else:
        columns = max(1, min(columns, count))
        rows = -(-count // columns)
        caption_lines = max(caption.count("\n") + 1 for caption in captions)
        cell_width, cell_height = 1.8, 1.8 + 0.2 * caption_lines
        width = max(cell_width * columns, 4.5)  # Room for the title even above one image.
        wrapped = wrap_title(title, width, 10) if title else ""
        title_height = 0.3 + 0.18 * (wrapped.count("\n") + 1) if wrapped else 0.0
        figure, axes = plt.subplots(
            rows, columns, figsize=(width, cell_height * rows + title_height), squeeze=False
        )
        fixed_range = {"vmin": 0, "vmax": 255} if np.asarray(images).dtype == np.uint8 else {}
        for index, axis in enumerate(axes.ravel()):
            axis.axis("off")
            if index < count:
                axis.imshow(np.atleast_2d(np.squeeze(images[index])), cmap="gray", **fixed_range)
                axis.set_title(captions[index], fontsize=10)
        if wrapped:
            figure.suptitle(wrapped, fontsize=10)
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
