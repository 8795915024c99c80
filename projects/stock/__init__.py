"""Daily stock prices: an LSTM forecasting the next day, scored beside persistence (tomorrow = today)."""

from projects.stock.data import load_data
from projects.stock.demo import demo
from projects.stock.evaluate import evaluate, format_report
from projects.stock.model import build_model
from projects.stock.predict import add_predict_arguments, format_prediction, predict
from projects.stock.settings import validate_config

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
