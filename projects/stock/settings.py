"""The stock project's own config checks, beyond the types that ``config.toml`` already fixes."""

from __future__ import annotations

from common.core.config import Config, require, require_choice
from common.core.errors import UserError

TARGETS = ("log_return", "return", "price")
GAP_RULES = ("drop", "ffill", "error")
# model.CELLS, repeated here because this module must not import Keras (a test keeps them equal).
CELLS = ("lstm", "gru", "simple_rnn", "conv1d")

# The types of the project's own config keys: config.toml gives their defaults and comments, and
# the keys every project shares come from common/core/defaults.toml. A key of config.toml that is
# neither here nor shared is a misspelling, refused before any data is read; a new key is added
# in both places.
KEYS = {
    "data.path": str,
    "data.column": str,
    "data.features": list[str],
    "data.window": int,
    "data.target": str,
    "data.validation_fraction": float,
    "data.test_fraction": float,
    "data.gaps": str,
    "model.cell": str,
    "model.units": list[int],
    "model.kernel_size": int,
    "model.dropout": float,
    "evaluate.coverage": float,
    "evaluate.adapt_rate": float,
    "evaluate.horizons": list[int],
}


def validate_config(config: Config) -> None:
    """Checks the ``[data]``, ``[model]`` and ``[evaluate]`` values; raises UserError naming the key."""
    data = config.data
    if not data.column.strip():
        raise UserError("config key 'data.column' is empty; name the price column to forecast, e.g. Close")
    # The default list is empty, so config.toml fixes no type for its items: check them here.
    if any(not isinstance(name, str) or not name.strip() for name in data.features):
        raise UserError(f"config key 'data.features' holds an empty column name; received: {data.features!r}")
    if data.window < 2:
        raise UserError(f"config key 'data.window' must be at least 2 days; received: {data.window}")
    require_choice(config, "data.target", TARGETS, "a target")
    require_choice(config, "data.gaps", GAP_RULES, "a gap rule")
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
    require_choice(config, "model.cell", CELLS, "a cell")
    if not model.units or any(units < 1 for units in model.units):
        raise UserError(
            f"config key 'model.units' needs one or more positive unit counts, e.g. [32]; "
            f"received: {model.units!r}"
        )
    require(model.kernel_size >= 1, "model.kernel_size", "must be at least 1 day", model.kernel_size)
    require(0 <= model.dropout < 1, "model.dropout", "must be in [0, 1)", model.dropout)
    evaluate = config.evaluate
    require(
        0 < evaluate.coverage < 1,
        "evaluate.coverage",
        "must lie between 0 and 1, e.g. 0.9",
        evaluate.coverage,
    )
    require(
        0 <= evaluate.adapt_rate < 1,
        "evaluate.adapt_rate",
        "must lie in [0, 1) (0 = off)",
        evaluate.adapt_rate,
    )
    require(
        bool(evaluate.horizons) and all(days >= 1 for days in evaluate.horizons),
        "evaluate.horizons",
        "needs one or more horizons of at least 1 trading day, e.g. [1, 5, 10]",
        evaluate.horizons,
    )
