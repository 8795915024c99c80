"""Handwritten digits: a CNN on MNIST, predicting drawings and photos of digits."""

from projects.mnist.data import load_data
from projects.mnist.demo import demo
from projects.mnist.evaluate import evaluate, format_report
from projects.mnist.model import build_model
from projects.mnist.predict import format_prediction, predict

__all__ = ["build_model", "demo", "evaluate", "format_prediction", "format_report", "load_data", "predict"]
