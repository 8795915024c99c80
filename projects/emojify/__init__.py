"""Emotions to emoji: a CNN on FER2013 faces, reading faces in photos and from a webcam.

What the project supplies to ``common`` (see common/core/project.py); each module is imported only
when one of its functions is first needed.
"""

from common.core.project import Headline, Project

PROJECT = Project(
    headline=Headline("test_accuracy", baseline="baseline_accuracy"),
    load_data="data:load_data",
    build_model="model:build_model",
    evaluate="evaluate:evaluate",
    predict="predict:predict",
    format_prediction="predict:format_prediction",
    format_report="evaluate:format_report",
    validate_config="settings:validate_config",
    config_keys="settings:KEYS",
    demo="demo:demo",
    training_batches="augment:training_batches",
    serving_model="model:serving_model",
    web_api="predict:WEB_API",
    describe_io="predict:describe_io",
    like="classifier",
)
