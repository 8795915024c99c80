"""Twoway: a house's price and its kind from two inputs, a model with two inputs and two outputs.

The per-output losses and loss weights are tables in ``config.toml`` (``[train.loss]``,
``[train.loss_weights]``); the inputs and targets are dicts keyed by the layers' names.
"""

from common.core.project import Headline, Project

PROJECT = Project(
    headline=Headline("test_accuracy", baseline="baseline_accuracy"),
    load_data="houses:load_data",
    build_model="houses:build_model",
    evaluate="houses:evaluate",
    predict="houses:predict",
    callbacks="houses:callbacks",
    web_api={"upload": ".json", "upload_help": "a JSON house: size, rooms, region"},
)
