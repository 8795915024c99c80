"""Emotions to emoji: a CNN on FER2013 faces, reading faces in photos and from a webcam."""

from projects.emojify.data import load_data
from projects.emojify.demo import demo
from projects.emojify.evaluate import evaluate, format_report
from projects.emojify.model import build_model
from projects.emojify.predict import add_predict_arguments, format_prediction, predict
from projects.emojify.settings import validate_config

__all__ = [
    "add_predict_arguments",
    "build_model",
    "demo",
    "evaluate",
    "format_prediction",
    "format_report",
    "load_data",
    "predict",
    "validate_config",
]
