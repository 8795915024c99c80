"""Denoiser: clean 8x8 digits from noisy ones, with a subclassed model and a custom layer.

Both are registered with ``@keras.saving.register_keras_serializable``: wherever a saved model is
loaded, ``common`` imports this project's model module first, so Keras finds them.
"""

from common.core.project import Headline, Project

PROJECT = Project(
    headline=Headline(
        "error_ratio",
        meaning="the test error over that of returning the noisy digit itself; below 1 removes noise",
        baseline_value=1.0,
    ),
    load_data="model:load_data",
    build_model="model:build_model",
    evaluate="model:evaluate",
    predict="model:predict",
    callbacks="model:callbacks",
)
