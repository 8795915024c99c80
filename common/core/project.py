"""The contract between ``common`` and a project: one ``PROJECT = Project(...)`` per project.

Each ``projects/<name>/__init__.py`` declares what the project supplies, in one place::

    PROJECT = Project(
        headline=Headline("test_accuracy", baseline="baseline_accuracy"),
        load_data="data:load_data",          # projects/<name>/data.py, function load_data
        build_model="model:build_model",
        evaluate="evaluate:evaluate",
        predict="predict:predict",
        format_prediction="predict:format_prediction",   # optional hooks: leave out what you lack
    )

A function is named as ``"module:function"`` inside the project's package (imported on first use,
so ``list``, ``--help`` and config checks never import Keras), or given as the function itself
(a one-file project). :class:`ProjectFunctions` lists every function and hook with its signature;
``project.functions`` gives them, an undeclared optional hook being ``None``. This module imports
nothing heavy: a project's ``__init__.py`` imports it and nothing else.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, TypeGuard, cast

from common.core.config import Config, load_config
from common.core.errors import UserError

# A function: "module:function" in the project's package, or the function itself.
FunctionRef = str | Callable[..., Any]


class ProjectFunctions(Protocol):
    """Every function a project can supply; the first four are required, the others optional
    (``None`` when the project does not declare them).

    ``load_data(config, need_training=True) -> common.kit.splits.Splits``
        The train / validation / test splits and where they came from. With
        ``need_training=False`` only the test split is needed (for ``evaluate``).
    ``build_model(config, splits) -> keras.Model``
        An uncompiled model, preprocessing layers inside; the workflow compiles it.
    ``evaluate(model, splits, config, out_dir) -> dict``
        The task's metrics beside its trivial baseline, with its plots written to ``out_dir``.
    ``predict(model, inputs, config, *, option=default, ...) -> Iterable[dict]``
        Raw inputs (file paths) to one JSON-ready result each, in order. An input that cannot
        be read gives ``{"input": ..., "error": "..."}`` (see :func:`common.core.errors.per_input`)
        so the other inputs are still answered. Its keyword-only options, each annotated
        ``Annotated[type, Option("help")]`` with a default, are ``predict``'s flags on the
        command line and the query parameters of ``serve`` (see :func:`predict_options`).
    ``format_prediction(result) -> str``
        One human-readable line for a result; JSON is printed otherwise.
    ``format_report(metrics) -> str``
        The task's own lines under ``evaluate``'s summary.
    ``validate_config(config)``
        Project-specific value checks; raise ``UserError`` naming the key. Its module must not
        import Keras: it runs before anything heavy.
    ``demo(argv) -> int``
        The interactive window, run by ``python -m common demo <name>``.
    ``training_batches(config, splits, first_epoch) -> common.kit.batches.ShuffledBatches``
        The training batches, e.g. a subclass that augments each batch in the input pipeline
        instead of in the model. Its order and randomness must depend only on the seed, the
        epoch and the batch index, so a resumed run trains on the same batches. Without it,
        ``ShuffledBatches`` of the training split.
    ``serving_model(model, config) -> keras.Model``
        The model as ``predict`` and ``evaluate`` query it (e.g. averaged with each input's
        mirror image); ``export`` writes this one. Without it, the trained model itself. A model
        with ``is_serving_model`` set (``serve``'s batching stand-in for this function's result,
        see :mod:`common.serving.batching`) is returned as it is.
    ``compile_options(config) -> dict``
        What ``model.compile`` receives beside, or instead of, the config's names: ``loss`` (a
        function, a ``keras.losses.Loss``, or a dict of them per output), ``metrics`` (metric
        objects such as ``keras.metrics.AUC()``, or a dict per output), ``loss_weights``,
        ``weighted_metrics``, ``optimizer`` (an optimizer object, used as it is: the config's
        ``learning_rate``, schedule and optimizer keys then are the project's to read). A key it
        leaves out comes from ``[train]``, whose names are checked before any data is read. A
        loss or metric that is the project's own must be found again when a checkpoint is loaded
        (``--resume``): register it with ``@keras.saving.register_keras_serializable`` or list
        it in ``custom_objects``.
    ``describe_io(config) -> ModelIO``
        What the model takes and gives, in words, for whoever runs an exported file of it outside
        this template (``export`` writes it into ``export.json``): the input's units and range and
        what of ``predict``'s preparation stays in Python, what the output means, the class
        names. Without it, ``export`` says what it can tell on its own: the input's shape and
        type, and the data's ``info["class_names"]`` as classes where the output has one value
        per class.
    ``callbacks(config, run_dir) -> list[keras.callbacks.Callback]``
        Callbacks of the project's own, given the run folder to write in. ``fit`` calls them
        after early stopping and the learning-rate schedule and before the per-epoch commit, so
        what they change in the model or optimizer at an epoch's end is in that epoch's
        checkpoint. Called afresh when a run resumes: a callback that keeps a record across
        epochs appends to its file in ``run_dir`` (e.g. ``keras.callbacks.CSVLogger(...,
        append=True)``) rather than holding it in memory.
    """

    def load_data(self, config: Config, need_training: bool = True) -> Any: ...

    def build_model(self, config: Config, splits: Any) -> Any: ...

    def evaluate(self, model: Any, splits: Any, config: Config, out_dir: Path) -> dict: ...

    def predict(self, model: Any, inputs: list[str], config: Config, **options: Any) -> Iterable[dict]: ...

    format_prediction: Callable[[dict], str] | None
    format_report: Callable[[dict], str] | None
    validate_config: Callable[[Config], None] | None
    demo: Callable[[list[str]], int] | None
    training_batches: Callable[[Config, Any, int], Any] | None
    serving_model: Callable[[Any, Config], Any] | None
    compile_options: Callable[[Config], dict] | None
    callbacks: Callable[[Config, Path], list] | None
    describe_io: Callable[[Config], ModelIO] | None


REQUIRED_FUNCTIONS = ("load_data", "build_model", "evaluate", "predict")
OPTIONAL_FUNCTIONS = (
    "format_prediction",
    "format_report",
    "validate_config",
    "demo",
    "training_batches",
    "serving_model",
    "compile_options",
    "callbacks",
    "describe_io",
)


@dataclass(frozen=True)
class ModelIO:
    """What a project's model takes and gives, in words, for a user of an exported file of it
    (see the ``describe_io`` hook of :class:`ProjectFunctions`); ``export`` writes it into
    ``export.json`` beside the input's shape and type.

    Attributes:
        input: the values the model expects and how to make them from raw data, naming what of
            ``predict``'s preparation is not inside the model, e.g. "28x28 grayscale pixels,
            0-255, the digit's ink bright on a dark background, as in MNIST".
        output: what the output's values mean, e.g. "one probability per class, in the order of
            classes".
        classes: the class names, in the order of the output's values; empty for a model that
            does not classify.
    """

    input: str
    output: str
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Headline:
    """The score a project is judged by, as ``runs``, ``compare``, ``serve`` and the end of
    ``train`` show it.

    Attributes:
        metric: its key in ``metrics.json``, e.g. ``test_accuracy``.
        baseline: the key of the trivial baseline printed beside it (majority class), if any.
        meaning: one phrase saying how to read it when no baseline is beside it.
        baseline_value: the baseline's score when it is the same for every run (a ratio to the
            baseline's own error is 1.0 for the baseline).
    """

    metric: str
    baseline: str | None = None
    meaning: str = ""
    baseline_value: float | None = None

    def no_better(self, metrics: dict) -> str:
        """One sentence when the score is no better than its baseline, else ``""``.

        A score beside a baseline key (an accuracy beside the majority class's) is no better
        when it lies within two standard errors of the baseline's rate over the ``n_test``
        examples (``2 * sqrt(b * (1 - b) / n)``): a gain that small is what chance gives. A
        ratio to the baseline's error (``baseline_value``) is no better at or above it."""
        score = metrics.get(self.metric)
        if not _is_number(score):
            return ""
        if self.baseline is not None:
            baseline, examples = metrics.get(self.baseline), metrics.get("n_test")
            if not _is_number(baseline) or not _is_number(examples) or examples < 1:
                return ""
            noise = 2 * math.sqrt(max(baseline * (1 - baseline), 0.0) / examples)
            if score > baseline + noise:
                return ""
            return (
                f"{self.metric} {score:.4f} is no better than the trivial baseline's {baseline:.4f} (within "
                f"two standard errors, {noise:.4f}, on {examples:,} test examples): the model has not learnt "
                "the task yet; train longer (more epochs) or check the data"
            )
        if self.baseline_value is not None and score >= self.baseline_value:
            return (
                f"{self.metric} {score:.4f} is no better than the trivial baseline's "
                f"{self.baseline_value:g}: the model has not learnt the task yet; train longer (more "
                "epochs) or check the data"
            )
        return ""


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Project:
    """What a project supplies (its ``PROJECT``), and, once found by :mod:`common.core.registry`, its
    name and folder.

    Attributes:
        headline: the score the project is judged by.
        load_data, build_model, evaluate, predict: the required functions (see
            :class:`ProjectFunctions`), each ``"module:function"`` or the function.
        format_prediction ... describe_io: the optional hooks, ``None`` when absent.
        web_api: how ``python -m common serve`` offers ``predict`` (a dict, or ``"module:NAME"``
            of one): ``verb`` (the route
            ``/api/<name>/<verb>``, default ``predict``), ``upload`` (the suffix the uploaded file
            is saved with), ``upload_help``, ``upload_required`` (default true),
            ``picture_option`` (the option naming a picture ``predict`` writes, returned as a
            base64 PNG with ``?annotated=true``), ``batched`` (default true: concurrent requests'
            ``predict_on_batch`` calls are answered together, see :mod:`common.serving.batching`; false
            answers one request at a time). ``predict``'s own options are its query parameters
            (see :func:`predict_options`). A ``page.html`` in the folder is served at
            ``/<name>``.
        custom_objects: the project's own classes and functions a saved model names (custom
            layers, subclassed models, losses, metrics), as ``{"name": object}`` or
            ``"module:NAME"`` of such a dict, for those not registered with
            ``@keras.saving.register_keras_serializable``. Wherever a model of the project is
            loaded (``evaluate``, ``predict``, ``serve``, ``export``, ``ensemble``, ``distill``,
            ``--resume``, ``--continue-from``), the modules of ``build_model``,
            ``compile_options`` and ``callbacks`` are imported first (so their registered classes
            are known) and these objects added to Keras' own.
        config_keys: the types of the project's own config keys, as ``{"model.units": int,
            "model.blocks": list[list[int]], ...}`` or ``"module:NAME"`` of such a dict (by
            convention ``"settings:KEYS"``, beside ``validate_config``). The keys every project
            shares (``common/core/defaults.toml``) need no entry. With them, a key of the
            project's ``config.toml`` that is neither declared nor shared, or a declared key it
            lacks, is a one-line error before anything runs. Without them (``None``), the
            project's ``config.toml`` declares its own keys by their default values.
        like: the template in ``common/scaffold/templates/`` that ``new NAME --like <this project>``
            copies (``classifier``, ``series``, ``text`` or ``tabular``); empty when there is
            none.
    """

    headline: Headline
    load_data: FunctionRef
    build_model: FunctionRef
    evaluate: FunctionRef
    predict: FunctionRef
    format_prediction: FunctionRef | None = None
    format_report: FunctionRef | None = None
    validate_config: FunctionRef | None = None
    demo: FunctionRef | None = None
    training_batches: FunctionRef | None = None
    serving_model: FunctionRef | None = None
    compile_options: FunctionRef | None = None
    callbacks: FunctionRef | None = None
    describe_io: FunctionRef | None = None
    custom_objects: Mapping[str, Any] | str = field(default_factory=dict)
    web_api: Mapping[str, Any] | str = field(default_factory=dict)
    config_keys: Mapping[str, Any] | str | None = None
    like: str = ""
    # Set by the registry when it finds the project.
    name: str = ""
    folder: Path = Path()

    @property
    def package(self) -> str:
        return f"projects.{self.name}"

    @property
    def functions(self) -> ProjectFunctions:
        """The project's functions, ``project.functions.load_data(...)``; modules load lazily."""
        return cast(ProjectFunctions, _Functions(self))

    def resolve(self, hook: str) -> Callable[..., Any] | None:
        """The function declared for ``hook`` (imported now), or ``None`` for an absent hook."""
        function = self._lookup(hook)
        if function is not None and not callable(function):
            raise UserError(f"project '{self.name}': {hook}={getattr(self, hook)!r} is not a function")
        return function

    def keras_objects(self) -> dict[str, Any]:
        """The declared ``custom_objects`` as a dict, after importing the modules that define
        the project's model, compile options and callbacks (registering their classes)."""
        for hook in ("build_model", "compile_options", "callbacks"):
            self._lookup(hook)
        objects = self._lookup("custom_objects") or {}
        if not isinstance(objects, Mapping):
            raise UserError(
                f"project '{self.name}': custom_objects={self.custom_objects!r} is not a dict of "
                "{'name': class or function}"
            )
        return dict(objects)

    def served_api(self) -> dict[str, Any]:
        """The declared ``web_api`` as a dict (its module imported if it is named)."""
        return dict(self._lookup("web_api") or {})

    def _lookup(self, attribute: str) -> Any:
        ref = getattr(self, attribute)
        if not isinstance(ref, str):
            return ref
        module_name, _, name = ref.partition(":")
        module = importlib.import_module(f"{self.package}.{module_name}")
        if not hasattr(module, name):
            raise UserError(
                f"project '{self.name}': {attribute}={ref!r} but projects/{self.name}/{module_name}.py "
                f"defines no {name}"
            )
        return getattr(module, name)

    def check(self) -> None:
        """That every declared ``"module:function"`` names an existing module file (read only)."""
        named = (*REQUIRED_FUNCTIONS, *OPTIONAL_FUNCTIONS, "web_api", "custom_objects", "config_keys")
        for spec in fields(self):
            ref = getattr(self, spec.name)
            if spec.name not in named or not isinstance(ref, str):
                continue
            where = f"project '{self.name}': {spec.name}={ref!r}"
            module_name, colon, function_name = ref.partition(":")
            if not colon or not function_name:
                raise UserError(f"{where} should read 'module:name', e.g. 'data:load_data'")
            if not (self.folder / f"{module_name}.py").is_file():
                raise UserError(f"{where} but projects/{self.name}/{module_name}.py does not exist")

    @property
    def default_config(self) -> Path:
        return self.folder / "config.toml"

    def summary(self) -> str:
        """The first line of the package docstring, read without importing anything."""
        source = (self.folder / "__init__.py").read_text(encoding="utf-8")
        docstring = ast.get_docstring(ast.parse(source)) or ""
        return docstring.strip().split("\n")[0]

    def load_config(
        self,
        config_file: str | Path | None = None,
        overrides: list[str] | None = None,
        check_paths: bool = True,
    ) -> Config:
        """The shared defaults, the project's ``config.toml``, an optional variant (or saved)
        config file, then ``--set`` overrides, checked against the declared keys, by the shared
        rules and by the project's own ``validate_config``. Imports no Keras, so a bad key or
        value is reported before any data is read or folder made."""
        config = load_config(
            self.default_config,
            Path(config_file) if config_file else None,
            overrides,
            check_paths=check_paths,
            keys=self.declared_keys(),
        )
        validate = self.functions.validate_config
        if validate is not None:
            validate(config)
        return config

    def declared_keys(self) -> dict[str, Any] | None:
        """The declared ``config_keys`` as a dict (its module imported if it is named), or
        ``None`` for a project whose ``config.toml`` declares its own keys."""
        keys = self._lookup("config_keys")
        if keys is None:
            return None
        if not isinstance(keys, Mapping):
            raise UserError(
                f"project '{self.name}': config_keys={self.config_keys!r} is not a dict of "
                "{'table.key': type}"
            )
        return dict(keys)

    def config_variants(self) -> list[Path]:
        """Every TOML file in the project folder: the defaults first, then the variants."""
        return [self.default_config] + sorted(
            path for path in self.folder.glob("*.toml") if path.name != "config.toml"
        )


@dataclass(frozen=True)
class Option:
    """The help of one of ``predict``'s keyword-only options, in its annotation::

        def predict(model, inputs, config, *, days: Annotated[int, Option("days to forecast")] = 5):

    gives ``python -m common predict <name> --days N`` and ``POST /api/<name>/...?days=N``.

    Attributes:
        help: one phrase for ``--help`` and the web API's documentation.
        web: whether ``serve`` offers it as a query parameter (not for an option that names a
            file on the server's disk).
        metavar: the value's name in ``--help``.
    """

    help: str
    web: bool = True
    metavar: str | None = None


@dataclass(frozen=True)
class PredictOption:
    """One keyword-only option of a project's ``predict``, as its signature declares it."""

    name: str
    type: type
    default: Any
    help: str
    web: bool
    metavar: str | None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def predict_options(predict: Callable[..., Any]) -> list[PredictOption]:
    """The keyword-only options of a ``predict`` function, in order: their names, types (the
    annotation without ``| None``), defaults and :class:`Option` help.

    Raises:
        UserError: an option without a default, or whose type is not bool, int, float, str or Path.
    """
    hints = typing.get_type_hints(predict, include_extras=True)
    options = []
    for parameter in inspect.signature(predict).parameters.values():
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        hint = hints.get(parameter.name, str)
        extras: tuple = ()
        if typing.get_origin(hint) is typing.Annotated:
            hint, *rest = typing.get_args(hint)
            extras = tuple(rest)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        where = f"{predict.__module__}.predict's option '{parameter.name}'"
        if parameter.default is inspect.Parameter.empty:
            raise UserError(f"{where} needs a default value")
        if hint not in (bool, int, float, str, Path):
            raise UserError(f"{where} should be a bool, int, float, str or Path, not {hint!r}")
        help_ = next((extra for extra in extras if isinstance(extra, Option)), Option(""))
        options.append(
            PredictOption(parameter.name, hint, parameter.default, help_.help, help_.web, help_.metavar)
        )
    return options


class _Functions:
    """Attribute access to a project's declared functions, importing each module on first use."""

    def __init__(self, project: Project) -> None:
        self._project = project

    def __getattr__(self, name: str) -> Any:
        if name not in REQUIRED_FUNCTIONS + OPTIONAL_FUNCTIONS:
            raise AttributeError(f"a project has no function {name!r}")
        return self._project.resolve(name)
