"""Checks of the mnist keys beyond their types, each naming the key it is about (no Keras here)."""

from __future__ import annotations

from common.core.config import Config, require

# 28x28 digits halve at each pooling: after four they are 1x1, a fifth would be empty.
MAX_POOLINGS = 4

# The types of the project's own config keys: config.toml gives their defaults and comments, and
# the keys every project shares come from common/core/defaults.toml. A key of config.toml that is
# neither here nor shared is a misspelling, refused before any data is read; a new key is added
# in both places.
KEYS = {
    "data.path": str,
    "data.download_timeout": float,
    "data.validation_fraction": float,
    "data.test_fraction": float,
    "model.conv_filters": list[int],
    "model.pool_every": int,
    "model.block_dropout": float,
    "model.batch_norm": bool,
    "model.dense_units": int,
    "model.dropout": float,
    "model.augment_rotation": float,
    "model.augment_shift": float,
    "model.augment_zoom": float,
}


def validate_config(config: Config) -> None:
    """Raises ``UserError`` naming the first key whose value cannot work."""
    data, model = config.data, config.model
    require(
        data.download_timeout >= 0,
        "data.download_timeout",
        "must be 0 (never try) or more seconds",
        data.download_timeout,
    )
    for key in ("validation_fraction", "test_fraction"):
        require(0 < data[key] < 0.5, f"data.{key}", "must lie between 0 and 0.5", data[key])
    filters = model.conv_filters
    require(
        len(filters) >= 1 and all(count >= 1 for count in filters),
        "model.conv_filters",
        "must hold one or more filter counts, each 1 or more",
        filters,
    )
    require(
        model.pool_every >= 1,
        "model.pool_every",
        "must be 1 or more (a pooling every N convolutions)",
        model.pool_every,
    )
    require(
        len(filters) // model.pool_every <= MAX_POOLINGS,
        "model.pool_every",
        f"gives {len(filters) // max(model.pool_every, 1)} poolings; a 28x28 digit allows at most "
        f"{MAX_POOLINGS} (use fewer conv_filters or a larger pool_every)",
        model.pool_every,
    )
    require(model.dense_units >= 1, "model.dense_units", "must be 1 or more", model.dense_units)
    for key in ("block_dropout", "dropout", "augment_rotation", "augment_shift", "augment_zoom"):
        require(0 <= model[key] < 1, f"model.{key}", "must lie in [0, 1) (0 turns it off)", model[key])
