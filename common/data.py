"""The container every project's ``load_data`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Splits:
    """Train / validation / test arrays, and where they came from.

    Attributes:
        test: ``(x_test, y_test)``; always present.
        source: a human-readable description of the data actually used, recorded in
            ``metrics.json`` as ``data_source`` so no figure is mistaken for another dataset's.
        train: ``(x_train, y_train)``, or ``None`` when only evaluating.
        validation: ``(x_val, y_val)``, or ``None`` when only evaluating. Never the test split.
        class_weight: optional ``{class_index: weight}`` passed to ``fit``.
        info: whatever else the project's model or evaluation needs (class names, scaler...).
    """

    test: tuple[Any, np.ndarray]
    source: str
    train: tuple[Any, np.ndarray] | None = None
    validation: tuple[Any, np.ndarray] | None = None
    class_weight: dict[int, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Returns ``n_train``, ``n_validation`` and ``n_test`` for ``metrics.json``."""
        sizes = {"n_test": len(self.test[1])}
        if self.train is not None:
            sizes["n_train"] = len(self.train[1])
        if self.validation is not None:
            sizes["n_validation"] = len(self.validation[1])
        return sizes
