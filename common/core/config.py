"""TOML config files turned into typed, validated settings, with ``--set key=value`` overrides.

A config is resolved from layers, each overriding the one before it:

1. ``common/core/defaults.toml``: the keys every project shares (``seed``, ``[train]``,
   ``[distill]``, ``[tune]``), each with its comment, written once;
2. ``projects/<name>/config.toml``: the project's own keys and the shared keys it changes;
3. a variant file (``--config projects/mnist/classic.toml``, or a run's saved ``config.toml``),
   holding only the keys it changes;
4. ``--set key=value`` on the command line.

The schema, what keys exist and their types, is the shared defaults' values plus the types the
project declares for its own keys (``KEYS`` in its ``settings.py``, named by ``config_keys`` in
its ``PROJECT``). So a misspelt key in any layer, the project's own ``config.toml`` included, is a
one-line error naming the file, the key and the nearest known key, before any data is read. A
project that declares no keys keeps the older rule: its ``config.toml`` is its own schema.

Each resolved :class:`Config` knows where each value came from (``config.sources``) and what the
project's defaults were (``config.defaults``); a run records both, so ``runs`` shows what each
run changed from the defaults of its day.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from common.core import paths
from common.core.errors import UserError
from common.core.files import UnreadableFile, read_regular_file

# The keys every project shares, with their comments: the first layer of every config.
SHARED_DEFAULTS = Path(__file__).with_name("defaults.toml")
# Where a value can come from, in the order the layers are applied (the last one wins).
SOURCES = ("default", "project", "variant", "--set")

# The optimizers Keras 3 knows by name (``keras.optimizers.get``); a test keeps this in step
# with the installed Keras. Checked here, before Keras is imported, so a typo costs no time.
OPTIMIZERS = (
    "adadelta", "adafactor", "adagrad", "adam", "adamax", "adamw", "ftrl", "lamb", "lion", "nadam",
    "rmsprop", "sgd",
)  # fmt: skip
# A config file is a few kilobytes; one of megabytes is not a config.
MAX_CONFIG_BYTES = 4 * 2**20
LR_SCHEDULES = ("constant", "plateau", "cosine")
# The losses of a classifier whose softmax probabilities a distillation teacher can pass on.
CLASSIFIER_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy")
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
    """The resolved settings of one project: shared defaults, the project's ``config.toml``, then
    a variant file, then ``--set``.

    Attributes:
        schema: each dotted key's type (``{"train.epochs": int, "model.units": list[int]}``).
        sources: where each dotted key's value came from, one of :data:`SOURCES`.
        defaults: the project's defaults, the values of the first two layers, as dotted keys
            (``None`` for a config not loaded from files).
        files: the file of each layer read (``{"default": ..., "project": ..., "variant": ...}``).
    """

    def __init__(
        self,
        values: dict[str, Any],
        schema: Mapping[str, Any] | None = None,
        sources: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        files: Mapping[str, Path] | None = None,
    ) -> None:
        super().__init__(values)
        flat = dict(_flatten(values))
        self.schema = dict(schema) if schema is not None else {key: _type_of(v) for key, v in flat.items()}
        self.sources = {key: (sources or {}).get(key, "default") for key in flat}
        self.defaults = copy.deepcopy(dict(defaults)) if defaults is not None else None
        self.files = dict(files or {})

    def get(self, dotted_key: str) -> Any:
        """Returns the value of ``"train.epochs"``-style key."""
        value: Any = self._values
        for part in dotted_key.split("."):
            value = value[part]
        return value

    def flat(self) -> dict[str, Any]:
        """Every key as ``{"train.epochs": 3, ...}``, in the order ``config`` shows them."""
        return dict(_flatten(self.to_dict()))

    def with_overrides(self, overrides: list[str]) -> Config:
        """Returns a copy with ``key=value`` strings applied and checked against this config."""
        values, sources = self.flat(), dict(self.sources)
        for override in overrides:
            key, raw_value = _split_override(override)
            _assign(values, self.schema, key, _parse_value(raw_value), "--set", self._name())
            sources[key] = "--set"
        return self._with(values, sources)

    def with_value(self, key: str, value: Any) -> Config:
        """Returns a copy with one key's value replaced, keeping where it came from (a teacher's
        run folder resolved to its model file is the same setting)."""
        values = self.flat()
        values[key] = value
        return self._with(values, self.sources)

    def changed(self) -> dict[str, Any]:
        """The keys whose values differ from the project's defaults, as ``runs`` shows them."""
        return changed_from(self.defaults or {}, self.flat())

    def record(self) -> dict[str, Any]:
        """What a run keeps beside its ``config.toml``: where each value came from and the
        project's defaults of the day, so its changes stay what they were when the defaults move."""
        return {"sources": dict(self.sources), "defaults": copy.deepcopy(self.defaults)}

    def save(self, path: Path) -> None:
        """Writes the resolved config as TOML, so a run can be reproduced with ``--config``."""
        with open(path, "wb") as file:
            tomli_w.dump(self._values, file)

    def _with(self, values: dict[str, Any], sources: Mapping[str, str]) -> Config:
        return Config(_nest(values), self.schema, sources, self.defaults, self.files)

    def _name(self) -> str:
        """The project's name, as the folder of its ``config.toml`` gives it."""
        project = self.files.get("project")
        return project.parent.name if project is not None else "PROJECT"


def flatten(values: dict[str, Any]) -> dict[str, Any]:
    """A config's nested tables as dotted keys (``{"train.epochs": 3}``); a free table such as
    ``tune.space`` stays one entry, as a variant file replaces it whole."""
    return dict(_flatten(values))


def changed_from(defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted keys of ``values`` whose values differ from ``defaults``, the type included
    (``1`` is not ``1.0``, nor ``true``)."""
    return {
        key: value
        for key, value in values.items()
        if key not in defaults or type(defaults[key]) is not type(value) or defaults[key] != value
    }


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
    keys: Mapping[str, Any] | None = None,
) -> Config:
    """Resolves a project's config from its layers (shared defaults, ``defaults_path``, a variant
    file, ``--set`` overrides) and validates it.

    Args:
        defaults_path: the project's ``config.toml``.
        variant_path: an optional TOML file with only the keys to change.
        overrides: ``"key=value"`` strings from the command line; they win over the files.
        base_dir: folder that relative paths in ``data.path`` are resolved against when
            checking they exist (the current directory by default).
        check_paths: whether ``data.path`` must exist. Prediction loads a model's saved config
            only for its preprocessing settings; the data it was trained on may be elsewhere.
        keys: the types of the project's own keys (``{"model.units": list[int], ...}``): with
            them, a key of ``config.toml`` that is neither declared nor shared is an error, as
            is a declared key it lacks. Without them, ``config.toml`` declares its own keys.

    Returns:
        The validated settings, knowing where each value came from.

    Raises:
        UserError: naming the file and the key, for an unknown or missing key, a wrong type or an
            impossible value.
    """
    defaults_path = Path(defaults_path)
    project_file = paths.in_repository(defaults_path)
    name = defaults_path.parent.name
    values = dict(_flatten(read_toml(SHARED_DEFAULTS)))
    schema = {key: _type_of(value) for key, value in values.items()} | dict(keys or {})
    sources = dict.fromkeys(values, "default")
    own = _flatten(read_toml(defaults_path))
    for key, value in own:
        if keys is None and key not in schema:
            # No declared keys: the project's file declares its own (it may also make a shared
            # key a table, such as one loss per output in [train.loss]).
            for other in [known for known in schema if _nested(key, known)]:
                del schema[other], values[other], sources[other]
            schema[key] = _type_of(value)
        _assign(values, schema, key, value, project_file, name)
        sources[key] = "project"
    missing = [key for key in keys or {} if key not in values]
    if missing:
        raise UserError(
            f"{project_file} lacks the key '{missing[0]}', which the project declares in its config "
            "keys; give it its default value there"
        )
    values = _in_table_order(values, [key for key, _ in own])
    defaults = dict(values)
    files = {"default": SHARED_DEFAULTS, "project": defaults_path}
    if variant_path is not None:
        files["variant"] = Path(variant_path)
        for key, value in _flatten(read_toml(variant_path)):
            _assign(values, schema, key, value, str(variant_path), name)
            sources[key] = "variant"
    config = Config(_nest(values), schema, sources, defaults, files).with_overrides(overrides or [])
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
    space = config.get("tune.space") if "tune" in config and "space" in config.tune else {}
    for key in space:
        if key not in config.schema:
            # A misspelt key here would otherwise wait for `tune` to be found.
            source = config.sources.get("tune.space", "default")
            where = paths.in_repository(config.files[source]) if source in config.files else source
            hint = did_you_mean(key, list(config.schema))
            raise UserError(f"[tune.space] (from {where}) names {key!r}, which is not a config key{hint}")
    if distilling(config) and config.train.loss not in CLASSIFIER_LOSSES:
        # The soft targets are a teacher's class probabilities; a regression has none to give.
        raise UserError(
            f"distillation teaches a classifier's probabilities, and train.loss is {config.train.loss!r}; "
            f"a teacher needs a project trained with {' or '.join(CLASSIFIER_LOSSES)}"
        )
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


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.epochs": 3}`` as ``{"train": {"epochs": 3}}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *tables, name = key.split(".")
        node = nested
        for table in tables:
            node = node.setdefault(table, {})
        node[name] = copy.deepcopy(value)
    return nested


def _nested(key: str, other: str) -> bool:
    """Whether one dotted key lies inside the other (``train.loss.price`` in ``train.loss``)."""
    return key.startswith(f"{other}.") or other.startswith(f"{key}.")


def _in_table_order(values: dict[str, Any], first: list[str]) -> dict[str, Any]:
    """``values`` with the top-level keys first, then the tables in the order of the keys in
    ``first`` (the project's own file: its [data] and [model] before the shared [train])."""

    def table(key: str) -> str:
        return key.split(".")[0] if "." in key else ""

    tables = list(dict.fromkeys(["", *map(table, first), *map(table, values)]))
    rank = {name: index for index, name in enumerate(tables)}
    return dict(sorted(values.items(), key=lambda item: rank[table(item[0])]))


def _type_of(value: Any) -> Any:
    """The type a default value fixes: ``list[int]`` for ``[32, 64]``, the first item's type for
    every item (an empty list takes any)."""
    if isinstance(value, list):
        return list[_type_of(value[0])] if value else list  # type: ignore[misc]
    return type(value)


def _type_name(expected: Any) -> str:
    """``int``, ``list of int``, ``list of list of int``..."""
    if typing.get_origin(expected) is list:
        return f"list of {_type_name(typing.get_args(expected)[0])}"
    return getattr(expected, "__name__", str(expected))


def _assign(values: dict[str, Any], schema: Mapping[str, Any], key: str, value: Any, source: str, name: str):
    """Sets a dotted key after checking it is in the schema and its value has the key's type."""
    if key not in schema:
        if any(known.startswith(f"{key}.") for known in schema):
            raise UserError(f"config key '{key}' is a table; set one of its keys instead")
        hint = did_you_mean(key, list(schema)) or f"; `python -m common config {name}` lists every key"
        raise UserError(f"unknown config key '{key}' (from {source}){hint}")
    if key in FREE_TABLES:
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' (from {source}) must be a table; received: {value!r}")
        values[key] = value
        return
    values[key] = _coerce(key, value, schema[key], values.get(key), source)


def _coerce(key: str, value: Any, expected: Any, example: Any, source: str) -> Any:
    """Returns value in the expected type, or raises a one-line error naming the key; ``example``
    (the value it replaces, if any) shows what a right value looks like."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key '{key}' (from {source}) must be a finite number; received: {value!r}")
    if typing.get_origin(expected) is list or expected is list:
        if not isinstance(value, list):
            return _type_error(key, value, expected, example, source)
        if expected is list:
            return value
        # Each item is checked (and an int promoted to float) like a single value would be.
        item_example = example[0] if isinstance(example, list) and example else None
        return [_coerce(key, item, typing.get_args(expected)[0], item_example, source) for item in value]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and not isinstance(value, str):
        # A path such as data.path=2018 parses as a number; for a text key the text was meant.
        if isinstance(value, (list, dict)):
            return _type_error(key, value, expected, example, source)
        return str(value)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    return _type_error(key, value, expected, example, source)


def _type_error(key: str, value: Any, expected: Any, example: Any, source: str) -> Any:
    like = f" like {example!r}" if example is not None else ""
    raise UserError(
        f"config key '{key}' (from {source}) expects {_type_name(expected)}{like}; "
        f"received: {value!r} (of type {type(value).__name__})"
    )


def toml_value(value: Any) -> str:
    """A value as it is written in a TOML file, on one line (``[32, 64]``, ``"adam"``)."""
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        items = (
            f"{key if re.fullmatch(r'[A-Za-z0-9_-]+', key) else json.dumps(key)} = {toml_value(item)}"
            for key, item in value.items()
        )
        return "{ " + ", ".join(items) + " }" if value else "{}"
    return tomli_w.dumps({"value": value}).partition("=")[2].strip()


def describe(config: Config) -> str:
    """Every key of a resolved config, its value and where the value came from (``python -m common
    config``), as TOML with dotted keys: the text is itself a config file ``--config`` reads."""
    layers = {
        "default": "the keys every project shares",
        "project": "the project's own keys, and the shared ones it changes",
        "variant": "--config: the keys it changes",
        "--set": "the command line",
    }
    lines = [f"# {config._name()}'s config: each value comes from the last of these layers that sets it"]
    for source, meaning in layers.items():
        if source in config.files:
            lines.append(f"#   {source:8} {paths.in_repository(config.files[source])} ({meaning})")
        elif source == "--set" and source in config.sources.values():
            lines.append(f"#   {source:8} {meaning}")
    shared = dict(_flatten(read_toml(config.files["default"]))) if "default" in config.files else {}
    shown = {key: toml_value(value) for key, value in config.flat().items()}
    key_width = max(map(len, shown))
    value_width = min(max(map(len, shown.values())), 40)
    for key, value in shown.items():
        source = config.sources[key]
        # What the value replaced: the shared default a project changes, or the project's default
        # a variant or --set changes.
        below = shared if source == "project" else config.defaults or {} if source != "default" else {}
        note = source
        if key in below and changed_from({key: below[key]}, {key: config.get(key)}):
            layer = "shared" if source == "project" else "project"
            note += f", over {toml_value(below[key])} ({layer} default)"
        lines.append(f"{key:<{key_width}} = {value:<{value_width}}  # {note}")
    return "\n".join(lines)
