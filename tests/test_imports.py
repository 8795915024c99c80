"""Answering a request never imports the training machinery: `serve` and `predict` load no module
that only training needs (measured as bench/imports.py measures it, in a fresh process)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bench import imports


def test_serve_loads_no_training_module() -> None:
    modules = imports.measure(["serve", "--port", "0"])
    assert "common.serving.app" in modules and "common.serving.loading" in modules
    assert [name for name in imports.TRAINING if name in modules] == []


def test_predict_loads_no_training_module(tmp_path) -> None:
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255  # A one.
    Image.fromarray(digit).save(tmp_path / "one.png")
    modules = imports.measure(["predict", "mnist", str(tmp_path / "one.png"), "--json"])
    assert "projects.mnist.predict" in modules
    assert [name for name in imports.TRAINING if name in modules] == []
    # The line count is the file's own.
    assert modules["common.core.errors"] == len(
        (imports.ROOT / "common" / "core" / "errors.py").read_text().splitlines()
    )
