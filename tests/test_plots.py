"""The pictures a run writes say what data they show, and show it readably."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb
from PIL import Image

from common.kit import plots
from common.kit.classification import evaluate_classifier
from tests.conftest import says


class FixedModel:
    """Stands in for a Keras classifier: returns the probabilities it was given."""

    def __init__(self, probabilities: np.ndarray) -> None:
        self.probabilities = probabilities

    def predict(self, x, batch_size=None, verbose=0):
        return self.probabilities


def test_a_one_epoch_run_draws_visible_points_with_their_values(tmp_path, saved_figures):
    (tmp_path / "history.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss\n0,0.2,2.3,0.4,1.9\n")
    plots.plot_learning_curves(tmp_path / "history.csv", tmp_path / "curves.png", title="toy data")
    figure = saved_figures["curves.png"]
    assert says(figure, "toy data")
    picture = np.asarray(Image.open(tmp_path / "curves.png").convert("RGB")).astype(int)
    accuracy_axis = next(axis for axis in figure.axes if axis.get_title() == "accuracy")
    for line, value in zip(accuracy_axis.lines, (0.2, 0.4)):
        assert line.get_marker() not in (None, "", "None")
        x, y = accuracy_axis.transData.transform((1, value))
        # The marker is drawn in the line's colour where the data point is, inside the axes.
        colour = np.array(to_rgb(line.get_color())) * 255
        row, column = int(round(picture.shape[0] - y)), int(round(x))
        patch = picture[row - 2 : row + 3, column - 2 : column + 3]
        assert np.abs(patch - colour).sum(axis=-1).min() < 40, (line.get_label(), patch)
    # The value of the single epoch is written beside its point.
    assert {"0.2", "0.4"} <= {text.get_text() for text in accuracy_axis.texts}


def test_confusion_matrix_and_mistakes_say_the_data_its_size_and_the_confidences(tmp_path, saved_figures):
    y_test = np.array([0, 1, 2, 0, 1, 2])
    probabilities = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.1, 0.3, 0.6],  # wrong: 2 at 60%
            [0.0, 0.0, 1.0],
            [0.2, 0.7, 0.1],  # wrong: 1 at 70%
            [0.1, 0.8, 0.1],
            [0.3, 0.3, 0.4],
        ]
    )
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    metrics = evaluate_classifier(
        FixedModel(probabilities),
        images,
        y_test,
        None,
        ["cat", "dog", "fox"],
        tmp_path,
        data_source="toy animals from /data/zoo",
    )
    assert metrics["test_accuracy"] == 4 / 6
    matrix = saved_figures["confusion_matrix.png"]
    assert says(matrix, "accuracy 0.6667 on n = 6 test examples") and says(
        matrix, "toy animals from /data/zoo"
    )

    mistakes = saved_figures["mistakes.png"]
    assert says(mistakes, "2 of 6 test examples misclassified") and says(
        mistakes, "toy animals from /data/zoo"
    )
    # One cell per mistake, the most confident first, each with its true and predicted class.
    shown = [axis for axis in mistakes.axes if axis.images]
    assert len(mistakes.axes) == 2
    assert [axis.get_title() for axis in shown] == ["true cat\npred dog (70%)", "true dog\npred fox (60%)"]
    # Thumbnails big enough to see (150 pixels or more), on a figure no wider than they need.
    assert all(axis.get_window_extent().width >= 150 for axis in shown)
    assert Image.open(tmp_path / "mistakes.png").size[0] <= 500


def test_long_titles_are_wrapped_to_the_figure(tmp_path, saved_figures):
    source = "synthetic sample of simple drawn faces (20 per emotion, seed 42), NOT FER2013 " * 2
    plots.plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b", "c"], tmp_path / "m.png", title=source)
    figure = saved_figures["m.png"]
    figure.canvas.draw()
    box = figure._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= figure.bbox.width
    assert says(figure, source)


def test_no_mistakes_is_said_in_words(tmp_path, saved_figures):
    plots.plot_image_grid(np.zeros((0, 28, 28), np.uint8), [], tmp_path / "none.png", empty_text="none wrong")
    assert [text.get_text() for text in saved_figures["none.png"].axes[0].texts] == ["none wrong"]
