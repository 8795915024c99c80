"""The container every project's ``load_data`` returns, and the splitting classifiers share."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from common.core.errors import UserError


def count(examples: Any) -> int:
    """How many examples an input or target holds: an array's first axis, or for the inputs or
    targets of a model with several (a dict, list or tuple of arrays), its first array's."""
    if isinstance(examples, dict):
        return count(next(iter(examples.values())))
    if isinstance(examples, (list, tuple)) and examples and _is_array(examples[0]):
        return count(examples[0])
    return len(examples)


def take(examples: Any, indices: Any) -> Any:
    """The examples ``indices`` (an index array or a slice) of an array, or of each array of a
    dict, list or tuple of them, in the same structure. A list of plain values (texts) is an
    array."""
    if isinstance(examples, dict):
        return {key: take(value, indices) for key, value in examples.items()}
    if isinstance(examples, (list, tuple)) and examples and _is_array(examples[0]):
        return type(examples)(take(value, indices) for value in examples)
    if isinstance(examples, list):
        examples = np.asarray(examples)
    return examples[indices]


def is_structured(examples: Any) -> bool:
    """Whether the inputs or targets are several arrays (a model with several inputs or
    outputs) rather than one."""
    if isinstance(examples, dict):
        return True
    return isinstance(examples, (list, tuple)) and bool(examples) and _is_array(examples[0])


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or hasattr(value, "shape") and hasattr(value, "dtype")


@dataclass(frozen=True, eq=False)
class FileList:
    """Examples kept on disk, one file each, decoded only when a batch needs them (streaming).

    It stands where an array of inputs would, as the ``x`` of a :class:`Splits` pair ``(x, y)``:
    ``len()`` counts the examples, and :meth:`read` decodes some of them into one array.

    Attributes:
        paths: the files, one per example (a NumPy array of ``str``, so index arrays select).
        decode: reads one file into one example's input array; the same shape for every file.
    """

    paths: np.ndarray
    decode: Callable[[str], np.ndarray]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, indices: np.ndarray | None = None, threads: int = 1) -> np.ndarray:
        """The examples ``indices`` (all when ``None``) decoded and stacked, in that order, on
        ``threads`` threads (decoders such as OpenCV's release the GIL)."""
        paths = self.paths if indices is None else self.paths[indices]
        if threads > 1 and len(paths) > 1:
            with ThreadPoolExecutor(threads) as pool:
                return np.stack(list(pool.map(self.decode, paths)))
        return np.stack([self.decode(path) for path in paths])


@dataclass
class Splits:
    """Train / validation / test arrays, and where they came from.

    Each split is a pair ``(x, y)``. ``x`` is an array (numbers, or texts for a model whose first
    layer reads them), a :class:`FileList`, or for a model with several inputs a dict (by input
    name) or list of arrays; ``y`` likewise an array, or a dict or list for several outputs.

    Attributes:
        test: ``(x_test, y_test)``; always present.
        source: a human-readable description of the data actually used, recorded in
            ``metrics.json`` as ``data_source`` so no figure is mistaken for another dataset's.
        train: ``(x_train, y_train)``, or ``None`` when only evaluating. ``x_train`` may be a
            :class:`FileList` (streamed from disk, see :attr:`streamed`); ``y_train`` is an array.
        validation: ``(x_val, y_val)``, or ``None`` when only evaluating. Never the test split.
            ``x_val`` may be a :class:`FileList` too.
        stand_in: the data is a stand-in for the project's dataset (an offline fallback sample,
            generated data). Recorded as ``stand_in_data`` and shown beside the run's score
            wherever the model is named, so it is never mistaken for a run on the real data.
        class_weight: optional ``{class_index: weight}`` passed to ``fit``.
        info: whatever else the project's model or evaluation needs (class names, scaler...).
    """

    test: tuple[Any, np.ndarray]
    source: str
    train: tuple[Any, np.ndarray] | None = None
    validation: tuple[Any, np.ndarray] | None = None
    stand_in: bool = False
    class_weight: dict[int, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Returns ``n_train``, ``n_validation`` and ``n_test`` for ``metrics.json``."""
        sizes = {"n_test": count(self.test[1])}
        if self.train is not None:
            sizes["n_train"] = count(self.train[1])
        if self.validation is not None:
            sizes["n_validation"] = count(self.validation[1])
        return sizes

    @property
    def streamed(self) -> bool:
        """Whether training reads its examples from files batch by batch (a :class:`FileList`)
        instead of holding them in memory."""
        return any(
            split is not None and isinstance(split[0], FileList) for split in (self.train, self.validation)
        )


def split_arrays(
    arrays: dict[str, np.ndarray], config: Any, need_training: bool
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], bool]:
    """Splits a classifier's arrays into test, and train / validation when training.

    Args:
        arrays: ``x_test``/``y_test`` and/or ``x_train``/``y_train``, as the source has them.
        config: reads ``data.test_fraction``, ``data.validation_fraction`` and ``seed``.
        need_training: whether train and validation splits are wanted.

    Returns:
        ``({"test": (x, y), "train": ..., "validation": ...}, test_was_held_out)``. When the
        source has no test split, a stratified ``data.test_fraction`` of its training split is
        held out as test, with the seed, so training and a later ``evaluate`` hold out the same
        examples. Validation is always carved, stratified, from what is left for training.

    Raises:
        UserError: training was asked for but the source holds only a test split.
    """

    def hold_out(x: np.ndarray, y: np.ndarray, fraction: float):
        x_keep, x_out, y_keep, y_out = train_test_split(
            x, y, test_size=fraction, stratify=y, random_state=config.seed
        )
        return (x_keep, y_keep), (x_out, y_out)

    held_out = "x_test" not in arrays
    if held_out:
        train: tuple[np.ndarray, np.ndarray] | None
        train, test = hold_out(arrays["x_train"], arrays["y_train"], config.data.test_fraction)
    else:
        test = (arrays["x_test"], arrays["y_test"])
        train = (arrays["x_train"], arrays["y_train"]) if "x_train" in arrays else None
    splits = {"test": test}
    if need_training:
        if train is None:
            raise UserError(
                f"{config.data.path} holds only a test split; training needs a training split too"
            )
        splits["train"], splits["validation"] = hold_out(*train, config.data.validation_fraction)
    return splits, held_out
