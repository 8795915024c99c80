"""TOML config files turned into typed, validated settings, with ``--set key=value`` overrides.

Defaults live in one place, ``projects/<name>/config.toml``, with a comment on every key. A
variant file (``--config projects/mnist/classic.toml``) holds only the keys it changes. The types
of the defaults are the schema: a key that is not in the defaults is unknown, a value of another
type is wrong, and both are errors naming the key.
"""

from __future__ import annotations

import copy
import difflib
import math
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from common.core.errors import UserError
from common.core.files import UnreadableFile, read_regular_file

# The optimizers Keras 3 knows by name (``keras.optimizers.get``); a test keeps this in step
# with the installed Keras. Checked here, before Keras is imported, so a typo costs no time.
OPTIMIZERS = (
    "adadelta", "adafactor", "adagrad", "adam", "adamax", "adamw", "ftrl", "lamb", "lion", "nadam",
    "rmsprop", "sgd",
)  # fmt: skip
# A config file is a few kilobytes; one of megabytes is not a config.
MAX_CONFIG_BYTES = 4 * 2**20
LR_SCHEDULES = ("constant", "plateau", "cosine")
# train.distribution and train.precision (common/training/devices.py applies them).
DISTRIBUTIONS = ("none", "data_parallel")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# train.cpu_devices: logical devices to try data-parallel training on a CPU; each takes a thread
# pool and a replica of the model, so thousands would exhaust the machine before training.
MAX_CPU_DEVICES = 64

# Keys every project must have, with the check each value must pass beyond its type.
_REQUIRED_CHECKS = {
    "seed": (lambda value: 0 <= value < 2**32, "must be a whole number from 0 to 2**32 - 1"),
    "train.epochs": (lambda value: value >= 1, "must be at least 1"),
    "train.batch_size": (lambda value: value >= 1, "must be at least 1"),
    "train.learning_rate": (lambda value: value > 0, "must be greater than 0"),
}
_REQUIRED_KEYS = [*_REQUIRED_CHECKS, "data.path"]


class Section:
    """Read-only attribute access to one table of a config (``config.train.epochs``)."""

    def __init__(self, values: dict[str, Any], prefix: str = "") -> None:
        self._values = values
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._values[name]
        except KeyError:
            raise AttributeError(f"config has no key '{self._prefix}{name}'") from None
        if isinstance(value, dict):
            return Section(value, f"{self._prefix}{name}.")
        return value

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def to_dict(self) -> dict[str, Any]:
        """Returns a deep copy of the values as plain dicts."""
        return copy.deepcopy(self._values)


class Config(Section):
    """The resolved settings of one project: defaults, then a variant file, then ``--set``."""

    def get(self, dotted_key: str) -> Any:
        """Returns the value of ``"train.epochs"``-style key."""
        value: Any = self._values
        for part in dotted_key.split("."):
            value = value[part]
        return value

    def with_overrides(self, overrides: list[str]) -> Config:
        """Returns a copy with ``key=value`` strings applied and checked against this config."""
        values = self.to_dict()
        for override in overrides:
            key, raw_value = _split_override(override)
            _assign(values, key, _parse_value(raw_value), self._values, source="--set")
        return Config(values)

    def save(self, path: Path) -> None:
        """Writes the resolved config as TOML, so a run can be reproduced with ``--config``."""
        with open(path, "wb") as file:
            tomli_w.dump(self._values, file)


def read_toml(path: Path) -> dict[str, Any]:
    """Reads a TOML file, turning a missing or malformed file into a one-line error."""
    path = Path(path)
    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except UnreadableFile as error:
        raise UserError(f"config file {error}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not UTF-8 text (at byte {error.start})") from None
    except RecursionError:
        raise UserError(f"config file {path} is not valid TOML: nested too deep") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"config file {path} is not valid TOML: {error}") from None


def load_config(
    defaults_path: Path,
    variant_path: Path | None = None,
    overrides: list[str] | None = None,
    base_dir: Path | None = None,
    check_paths: bool = True,
) -> Config:
    """Loads the project's defaults, applies a variant file and ``--set`` overrides, validates.

    Args:
        defaults_path: the project's ``config.toml``; its keys and value types are the schema.
        variant_path: an optional TOML file with only the keys to change.
        overrides: ``"key=value"`` strings from the command line; they win over the files.
        base_dir: folder that relative paths in ``data.path`` are resolved against when
            checking they exist (the current directory by default).
        check_paths: whether ``data.path`` must exist. Prediction loads a model's saved config
            only for its preprocessing settings; the data it was trained on may be elsewhere.

    Returns:
        The validated settings.

    Raises:
        UserError: naming the key, for an unknown key, a wrong type or an impossible value.
    """
    defaults = read_toml(defaults_path)
    values = copy.deepcopy(defaults)
    if variant_path is not None:
        for key, value in _flatten(read_toml(variant_path)):
            _assign(values, key, value, defaults, source=str(variant_path))
    config = Config(values).with_overrides(overrides or [])
    validate(config, base_dir=base_dir, check_paths=check_paths)
    return config


def validate(config: Config, base_dir: Path | None = None, check_paths: bool = True) -> None:
    """Checks the keys every project shares: present, and with possible values."""
    for key in _REQUIRED_KEYS:
        try:
            config.get(key)
        except KeyError:
            raise UserError(f"config is missing the required key '{key}'") from None
    for key, (check, requirement) in _REQUIRED_CHECKS.items():
        value = config.get(key)
        require(check(value), key, requirement, value)
    # The training keys the workflow reads, checked wherever a config has them.
    train = config.train
    if "early_stopping_patience" in train:
        require(train.early_stopping_patience >= 0, "train.early_stopping_patience",
                "must be 0 (off) or more epochs", train.early_stopping_patience)  # fmt: skip
    if "optimizer" in train:
        require_choice(config, "train.optimizer", OPTIMIZERS, "a Keras optimizer", any_case=True)
    if "lr_schedule" in train:
        require_choice(config, "train.lr_schedule", LR_SCHEDULES, "a schedule", any_case=True)
    if "distribution" in train:
        require_choice(config, "train.distribution", DISTRIBUTIONS, "a distribution", any_case=True)
    if "precision" in train:
        require_choice(config, "train.precision", PRECISIONS, "a precision policy", any_case=True)
    for key, check, requirement in (
        (
            "cpu_devices",
            lambda value: 1 <= value <= MAX_CPU_DEVICES,
            f"must be 1 (the CPU as one device) to {MAX_CPU_DEVICES}",
        ),
        ("momentum", lambda value: 0 <= value < 1, "must lie in [0, 1) (0 = off)"),
        ("weight_decay", lambda value: value >= 0, "must be 0 (off) or more"),
        ("plateau_factor", lambda value: 0 < value < 1, "must lie between 0 and 1"),
        ("plateau_patience", lambda value: value >= 0, "must be 0 (the default rule) or more epochs"),
        ("seed", lambda value: -1 <= value < 2**32, "must be -1 (the top-level seed) or 0 to 2**32 - 1"),
    ):
        if key in train:
            require(check(train[key]), f"train.{key}", requirement, train[key])
    if "distill" in config:
        distill = config.distill
        require(0 <= distill.alpha <= 1, "distill.alpha", "must lie in [0, 1]", distill.alpha)
        require(distill.temperature > 0, "distill.temperature", "must be greater than 0", distill.temperature)
    data_path = config.get("data.path")
    if data_path and check_paths:
        resolved = Path(base_dir or ".") / Path(data_path).expanduser()
        if not resolved.exists():
            raise UserError(
                f"config key 'data.path' points to {data_path!r}, which does not exist; "
                "fix the path or leave it empty for the project's default data"
            )


# Data keys that say where the examples are or how they are read, not which fall in which split.
_NOT_THE_SPLIT = {"path", "cache_dir", "download_timeout", "streaming"}


def split_settings(config: Config) -> dict:
    """The config keys that decide which examples fall in which split (ensembles and teachers
    must share them with their members and students)."""
    split = {"seed": config.seed}
    data = config.to_dict().get("data", {})
    split.update({f"data.{key}": value for key, value in data.items() if key not in _NOT_THE_SPLIT})
    return split


def training_seed(config: Config) -> int:
    """The seed of what training draws: the initial weights, the batch order, the augmentation and
    dropout. ``train.seed`` where a config sets it (0 or more), else the top-level ``seed``, which
    also draws the splits. Networks that differ only in ``train.seed`` are independent networks
    trained on the same split, so ``ensemble`` accepts them."""
    if "seed" in config.train and config.train.seed >= 0:
        return config.train.seed
    return config.seed


def distilling(config: Config) -> bool:
    """Whether the config trains with a teacher (a non-empty ``distill.teacher``)."""
    return "distill" in config and bool(config.distill.teacher)


def uses_mlflow(config: Config) -> bool:
    """Whether the config asks for MLflow tracking (a project without the key never does)."""
    return "mlflow" in config.train and bool(config.train.mlflow)


def require(condition: bool, key: str, requirement: str, value: Any) -> None:
    """Raises the one-line error for a value that cannot work: ``config key 'k' must ...``."""
    if not condition:
        raise UserError(f"config key '{key}' {requirement}; received: {value!r}")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'train.epochs'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def require_choice(
    config: Config, key: str, choices: tuple[str, ...], what: str = "a choice", any_case: bool = False
) -> None:
    """One line naming the key, the closest choice to a misspelt value, and every choice;
    ``any_case``: ``Adam`` is ``adam`` (Keras' names)."""
    value = config.get(key)
    compared = value.lower() if any_case else value
    if compared not in choices:
        raise UserError(
            f"config key '{key}': {value!r} is not {what}{did_you_mean(compared, choices)}; "
            f"choose one of {', '.join(choices)}"
        )


def _split_override(override: str) -> tuple[str, str]:
    key, separator, raw_value = override.partition("=")
    if not separator or not key.strip():
        raise UserError(f"--set expects key=value (like train.epochs=3); received: {override!r}")
    return key.strip(), raw_value.strip()


def _parse_value(raw_value: str) -> Any:
    """Reads a command-line value as TOML (3, 0.5, true, [1, 2], "text"), else as plain text."""
    try:
        return tomllib.loads(f"value = {raw_value}")["value"]
    except tomllib.TOMLDecodeError:
        return raw_value


# Tables whose keys are not config keys but data: a variant file replaces them whole. The search
# space of `tune` maps config keys ("train.learning_rate") to the values to try.
FREE_TABLES = ("tune.space",)


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in values.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in FREE_TABLES:
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _assign(values: dict, key: str, value: Any, schema: dict, source: str) -> None:
    """Sets a dotted key after checking it exists in the schema and the type matches."""
    parts = key.split(".")
    schema_node: Any = schema
    target = values
    for depth, part in enumerate(parts):
        if not isinstance(schema_node, dict) or part not in schema_node:
            known = [name for name, _ in _flatten(schema)]
            hint = did_you_mean(key, known) or "; the project's config.toml lists every key"
            raise UserError(f"unknown config key '{key}' (from {source}){hint}")
        schema_node = schema_node[part]
        if depth < len(parts) - 1:
            target = target[part]
    if key in FREE_TABLES:
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' (from {source}) must be a table; received: {value!r}")
        target[parts[-1]] = value
        return
    if isinstance(schema_node, dict):
        raise UserError(f"config key '{key}' is a table; set one of its keys instead")
    target[parts[-1]] = _coerce(key, value, schema_node, source)


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Returns value in the default's type, or raises a one-line error naming the key."""
    expected = type(default)
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key '{key}' (from {source}) must be a finite number; received: {value!r}")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and not isinstance(value, str):
        # A path such as data.path=2018 parses as a number; for a text key the text was meant.
        return str(value) if not isinstance(value, (list, dict)) else _type_error(key, value, default, source)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        if expected is list and default and value:
            # Each item is checked (and an int promoted to float) like a single value would be.
            return [_coerce(key, item, default[0], source) for item in value]
        return value
    return _type_error(key, value, default, source)


def _type_error(key: str, value: Any, default: Any, source: str) -> Any:
    raise UserError(
        f"config key '{key}' (from {source}) expects {type(default).__name__} like "
        f"{default!r}; received: {value!r} (of type {type(value).__name__})"
    )
