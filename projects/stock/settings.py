"""The stock project's own config checks, beyond the types that ``config.toml`` already fixes."""

from __future__ import annotations

from common.config import Config
from common.errors import UserError

TARGETS = ("log_return", "return", "price")
GAP_RULES = ("drop", "ffill", "error")


def validate_config(config: Config) -> None:
    """Checks the values of the ``[data]`` and ``[model]`` keys; raises UserError naming the key."""
    data = config.data
    if not data.column.strip():
        raise UserError("config key 'data.column' is empty; name the price column to forecast, e.g. Close")
    if any(not name.strip() for name in data.features):
        raise UserError(f"config key 'data.features' holds an empty column name; received: {data.features!r}")
    if data.window < 2:
        raise UserError(f"config key 'data.window' must be at least 2 days; received: {data.window}")
    if data.target not in TARGETS:
        raise UserError(
            f"config key 'data.target' must be one of {', '.join(TARGETS)}; received: {data.target!r}"
        )
    if data.gaps not in GAP_RULES:
        raise UserError(
            f"config key 'data.gaps' must be one of {', '.join(GAP_RULES)}; received: {data.gaps!r}"
        )
    for key in ("validation_fraction", "test_fraction"):
        value = data[key]
        if not 0 < value < 0.5:
            raise UserError(f"config key 'data.{key}' must be between 0 and 0.5; received: {value}")
    if data.validation_fraction + data.test_fraction > 0.6:
        raise UserError(
            "config keys 'data.validation_fraction' + 'data.test_fraction' leave under 40% of the "
            f"series for training; received: {data.validation_fraction} + {data.test_fraction}"
        )
    model = config.model
    if not model.lstm_units or any(units < 1 for units in model.lstm_units):
        raise UserError(
            f"config key 'model.lstm_units' needs one or more positive unit counts, e.g. [32]; "
            f"received: {model.lstm_units!r}"
        )
    if not 0 <= model.dropout < 1:
        raise UserError(f"config key 'model.dropout' must be in [0, 1); received: {model.dropout}")
