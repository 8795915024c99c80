"""Checks of the emojify keys beyond their types, each naming the key it is about."""

from __future__ import annotations

from common.core.config import Config, require

# The types of the project's own config keys: config.toml gives their defaults and comments, and
# the keys every project shares come from common/core/defaults.toml. A key of config.toml that is
# neither here nor shared is a misspelling, refused before any data is read; a new key is added
# in both places.
KEYS = {
    "data.path": str,
    "data.synthetic": bool,
    "data.synthetic_per_class": int,
    "data.cache_dir": str,
    "data.streaming": bool,
    "data.validation_fraction": float,
    "data.test_fraction": float,
    "model.blocks": list[list[int]],
    "model.padding": str,
    "model.batch_norm": bool,
    "model.block_dropout": list[float],
    "model.global_pooling": bool,
    "model.dense_units": int,
    "model.dropout": float,
    "model.augment_flip": bool,
    "model.augment_rotation": float,
    "model.augment_shift": float,
    "model.augment_zoom": float,
    "model.augment_contrast": float,
    "model.mirror_average": bool,
    "model.test_crops": int,
    "model.test_size": int,
    "augment.crop": int,
    "augment.scale": float,
    "augment.rotation": float,
    "augment.flip": bool,
    "augment.erase": float,
    "faces.detector": str,
    "faces.min_score": float,
    "faces.cascade": str,
    "faces.scale_factor": float,
    "faces.min_neighbors": int,
    "faces.photo_width": int,
    "faces.photo_min_face": float,
    "faces.frame_width": int,
    "faces.frame_min_face": float,
    "faces.whole_image_max_side": int,
    "train.class_weighting": str,
}


def validate_config(config: Config) -> None:
    """Raises ``UserError`` naming the first key whose value cannot work."""
    data, model, faces, train = config.data, config.model, config.faces, config.train
    for key, value in (
        ("data.validation_fraction", data.validation_fraction),
        ("data.test_fraction", data.test_fraction),
    ):
        require(0 < value < 0.5, key, "must lie between 0 and 0.5", value)
    csv_or_sample = str(data.path).lower().endswith(".csv") or (data.synthetic and not data.path)
    require(
        not (data.streaming and csv_or_sample),
        "data.streaming",
        "reads FER2013's image folders (Kaggle's train/<emotion>/ layout), not the CSV or the synthetic "
        "sample; set it to false for those",
        data.streaming,
    )
    require(
        data.synthetic_per_class >= 10,
        "data.synthetic_per_class",
        "must be at least 10",
        data.synthetic_per_class,
    )
    blocks = model.blocks
    require(
        1 <= len(blocks) <= 4 and all(isinstance(block, list) and block for block in blocks),
        "model.blocks",
        "must be 1 to 4 non-empty lists of filter counts (each block halves the 48x48 image)",
        blocks,
    )
    require(
        all(isinstance(filters, int) and filters >= 1 for block in blocks for filters in block),
        "model.blocks",
        "must hold whole numbers of filters, 1 or more",
        blocks,
    )
    require(model.padding in ("same", "valid"), "model.padding", "must be 'same' or 'valid'", model.padding)
    require(
        len(model.block_dropout) >= 1 and all(0 <= rate < 1 for rate in model.block_dropout),
        "model.block_dropout",
        "must hold one or more rates in [0, 1)",
        model.block_dropout,
    )
    require(0 <= model.dropout < 1, "model.dropout", "must lie in [0, 1)", model.dropout)
    require(model.dense_units >= 0, "model.dense_units", "must be 0 or more", model.dense_units)
    for key in ("augment_rotation", "augment_shift", "augment_zoom", "augment_contrast"):
        require(0 <= model[key] < 1, f"model.{key}", "must lie in [0, 1) (0 turns it off)", model[key])
    require(model.test_crops in (1, 5), "model.test_crops", "must be 1 (centre) or 5 (centre and corners)",
            model.test_crops)  # fmt: skip
    augment = config.augment
    require(model.test_crops == 1 or augment.crop > 0, "model.test_crops",
            "can be 5 only for a model trained on crops (augment.crop > 0)", model.test_crops)  # fmt: skip
    require(augment.crop == 0 or 16 <= augment.crop <= 48, "augment.crop",
            "must be 0 (whole faces) or 16 to 48 pixels", augment.crop)  # fmt: skip
    require(model.test_size == 0 or (augment.crop > 0 and model.global_pooling), "model.test_size",
            "needs a model trained on crops (augment.crop > 0) with global_pooling = true; 0 turns it off",
            model.test_size)  # fmt: skip
    require(model.test_size == 0 or augment.crop <= model.test_size <= 48, "model.test_size",
            f"must be 0 or from augment.crop ({augment.crop}) to 48 pixels", model.test_size)  # fmt: skip
    require(0 <= augment.scale < 1, "augment.scale", "must lie in [0, 1) (0 turns it off)", augment.scale)
    require(
        0 <= augment.rotation <= 180, "augment.rotation", "must lie in [0, 180] degrees", augment.rotation
    )
    require(0 <= augment.erase <= 1, "augment.erase", "must be a probability in [0, 1]", augment.erase)
    for key in ("photo_width", "frame_width"):
        require(faces[key] >= 0, f"faces.{key}", "must be 0 (full size) or more", faces[key])
    for key in ("photo_min_face", "frame_min_face"):
        require(0 < faces[key] < 1, f"faces.{key}", "must lie in (0, 1)", faces[key])
    require(
        faces.detector in ("retinaface", "haar"),
        "faces.detector",
        "must be 'retinaface' or 'haar'",
        faces.detector,
    )
    require(0 < faces.min_score < 1, "faces.min_score", "must lie in (0, 1)", faces.min_score)
    require(faces.scale_factor > 1, "faces.scale_factor", "must be greater than 1", faces.scale_factor)
    require(faces.min_neighbors >= 0, "faces.min_neighbors", "must be 0 or more", faces.min_neighbors)
    require(
        faces.whole_image_max_side >= 0,
        "faces.whole_image_max_side",
        "must be 0 or more",
        faces.whole_image_max_side,
    )
    require(
        train.class_weighting in ("none", "sqrt", "balanced"),
        "train.class_weighting",
        "must be 'none', 'sqrt' or 'balanced'",
        train.class_weighting,
    )
