"""The command line: ``python -m common COMMAND``, one command per step of the workflow.

Commands: list, config, train, evaluate, predict, runs, promote, compare, ensemble, tune, new, demo, serve.

Which model answers predict, evaluate, the demos and serve: the run promoted with `promote`,
else the shipped model in models/pretrained/<project>/; --model latest or --model RUN reaches any
run. Training, tuning and ensembling never change it unless asked (`train --promote`).

Examples:
    python -m common list
    python -m common config mnist --set train.epochs=3
    python -m common train mnist --set train.epochs=3
    python -m common runs mnist --sort test_accuracy
    python -m common promote mnist 20260101-120000
    python -m common ensemble emojify models/emojify/RUN_A models/emojify/RUN_B
    python -m common evaluate mnist --set data.path=data/mnist
    python -m common predict mnist digit.png --json
    python -m common serve --port 8000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

try:
    from common.core import paths, registry, runs
    from common.core.errors import UserError
    from common.core.files import strict_json
    from common.core.project import Project, predict_options
    from common.keras_setup import quiet_keras_import
except ModuleNotFoundError as missing:
    # `python -m common` run by a Python without the project's packages (the system one, or a
    # shell where .venv is not active): say so, rather than a traceback about a module.
    print(
        f"error: this Python ({sys.executable}) lacks the project's packages (no module named "
        f"{missing.name!r}); run `make install`, then `.venv/bin/python -m common ...` (or activate .venv)",
        file=sys.stderr,
    )
    sys.exit(2)

QUIET_FLAGS = ("-q", "--quiet")
MODEL_HELP = (
    "run folder, .keras file, 'latest' (the newest completed run) or 'pretrained' "
    "(default: the promoted run, else the shipped model)"
)

log = logging.getLogger("common")


def _build_parser(predict_project: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; ``predict_project``'s own ``predict`` flags are added."""
    parser = argparse.ArgumentParser(prog="python -m common", description=__doc__.split("\n")[0])
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and results (anywhere on the line)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("list", help="list the projects and their config files")

    config = commands.add_parser(
        "config", help="a project's resolved config: every key, its value and where the value comes from"
    )
    config.add_argument("project")
    config.add_argument("--config", help="a variant TOML file holding only the keys it changes")
    _add_set_argument(config, "override one config key, e.g. --set train.epochs=3 (repeatable)")

    train = commands.add_parser("train", help="train a project's model into a new run folder")
    train.add_argument("project")
    train.add_argument("--config", help="a variant TOML file holding only the keys it changes")
    _add_set_argument(train, "override one config key, e.g. --set train.epochs=3 (repeatable)")
    train.add_argument("--name", help="suffix for the run folder's name")
    train.add_argument(
        "--promote",
        action="store_true",
        help="once the run completes, make it the model predict, evaluate, the demos and serve answer with",
    )
    start = train.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run exactly where it stopped, with its own config",
    )
    start.add_argument(
        "--continue-from",
        type=Path,
        metavar="RUN_DIR",
        help="start a new run from a completed run's final weights, or an interrupted run's last "
        "checkpoint (its config, then --set)",
    )

    evaluate = commands.add_parser("evaluate", help="score a saved model on the test split")
    evaluate.add_argument("project")
    evaluate.add_argument("--model", help=MODEL_HELP)
    _add_set_argument(evaluate, "override a key of the model's saved config, e.g. data.path")
    evaluate.add_argument("--out", type=Path, help="folder for metrics.json and plots")

    predict = commands.add_parser("predict", help="run a saved model on raw inputs")
    predict.add_argument("project")
    predict.add_argument("inputs", nargs="*", metavar="INPUT")
    predict.add_argument("--model", help=MODEL_HELP)
    if predict_project is not None:
        _add_predict_options(predict, registry.get_project(predict_project))
    predict.add_argument("--json", action="store_true", help="one JSON object per input")
    _add_set_argument(predict, argparse.SUPPRESS)

    runs_parser = commands.add_parser("runs", help="a table of a project's runs, newest first")
    runs_parser.add_argument("project")
    runs_parser.add_argument("--json", action="store_true", help="one JSON list, for scripts")
    runs_parser.add_argument("--sort", metavar="METRIC", help="order by a recorded metric, best first")

    promote = commands.add_parser(
        "promote",
        help="choose the run predict, evaluate, the demos and serve answer with (else the shipped model)",
    )
    promote.add_argument("project")
    promote.add_argument(
        "run",
        nargs="?",
        metavar="RUN",
        help="a completed run: its folder, its name in models/<project>/, or latest",
    )
    promote.add_argument(
        "--clear", action="store_true", help="promote nothing: the shipped model answers again"
    )

    compare = commands.add_parser("compare", help="runs side by side: differing config keys, scores, curves")
    compare.add_argument("project")
    compare.add_argument(
        "runs", nargs="+", metavar="RUN", help="run folders, or run names in models/<project>/"
    )
    compare.add_argument("--out", type=Path, help="the plot of validation curves (PNG)")

    ensemble = commands.add_parser(
        "ensemble",
        help="average several trained models of a project inside one saved model, and score it on test",
    )
    ensemble.add_argument("project")
    ensemble.add_argument(
        "models", nargs="+", metavar="RUN", help="run folders (or .keras files beside their config.toml)"
    )
    ensemble.add_argument("--name", help="suffix for the run folder's name (default: ensemble)")
    ensemble.add_argument(
        "--promote", action="store_true", help="make the ensemble the model that answers by default"
    )
    _add_set_argument(
        ensemble, "override a key of the first model's config, which the ensemble keeps (how it is served)"
    )

    export = commands.add_parser(
        "export",
        help="write a trained model as a TF SavedModel, ONNX or LiteRT file, checked in its own runtime",
    )
    export.add_argument("project")
    export.add_argument("--model", help=MODEL_HELP)
    export.add_argument("--format", required=True, choices=("tf_saved_model", "onnx", "litert"))
    export.add_argument("--quantize", choices=("int8",), help="LiteRT only: int8 weights and activations")
    export.add_argument("--out", type=Path, help="the folder to write (default: models/<project>/exports/)")
    _add_set_argument(export, "override a key of the model's saved config, e.g. data.path")

    distill = commands.add_parser(
        "distill",
        help="train the project's network to answer like a teacher model (an ensemble, say): "
        "train with distill.teacher set",
    )
    distill.add_argument("project")
    distill.add_argument(
        "--teacher",
        required=True,
        metavar="RUN",
        help="the teaching model's run folder (or latest, pretrained), trained on the same split",
    )
    distill.add_argument("--config", help="a variant TOML file for the student, holding the keys it changes")
    _add_set_argument(distill, "override one of the student's config keys (repeatable)")
    distill.add_argument("--name", default="distilled", help="suffix for the run folder's name")
    distill.add_argument("--promote", action="store_true", help="make the student answer by default")
    distill.add_argument(
        "--continue-from",
        type=Path,
        metavar="RUN_DIR",
        help="start the student from a run's weights (its config, then --config's keys and --set)",
    )

    tune = commands.add_parser(
        "tune", help="search the config's [tune.space] with KerasTuner, trial by trial"
    )
    tune.add_argument("project")
    tune.add_argument("--trials", type=int, help="how many trials (default: tune.trials of the config)")
    tune.add_argument("--name", default="search", help="the search's name; the same name continues it")
    tune.add_argument("--config", help="a variant TOML file the trials start from")
    _add_set_argument(tune, "override a key in every trial")

    new = commands.add_parser("new", help="start a new project folder that trains, predicts and is tested")
    new.add_argument("name", help="the new project's name, a lowercase Python name")
    new.add_argument(
        "--like",
        default="classifier",
        metavar="TEMPLATE|PROJECT",
        help="a template of new (classifier, series, text, tabular) or a project, meaning "
        "the template it is like (default: classifier)",
    )

    serve = commands.add_parser(
        "serve", help="one local web app and HTTP API for every project that has a model"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="PROJECT=RUN",
        help="serve PROJECT with this run (a run folder or name, latest, pretrained, a .keras file) "
        "instead of its default model; repeatable",
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=64,
        metavar="N",
        help="most inputs one batched model call answers (default 64)",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        metavar="MS",
        help="how long a request waits for others to share its model call (default 5 ms)",
    )
    serve.add_argument(
        "--runtime",
        choices=("keras", "onnx"),
        default="keras",
        help="what answers the batched model calls: Keras (default) or the model converted to ONNX "
        "and checked against Keras at start (needs the export extra)",
    )

    demo = commands.add_parser("demo", help="open a project's interactive window")
    demo.add_argument("project")
    demo.add_argument("args", nargs=argparse.REMAINDER, help="passed to the project's demo")
    return parser


def _add_predict_options(parser: argparse.ArgumentParser, project: Project) -> None:
    """The project's own ``predict`` flags (``--days``, ``--out``), read from the keyword-only
    options of its ``predict`` function: their names, types, defaults and help."""
    for option in predict_options(project.functions.predict):
        if option.type is bool:
            parser.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
            continue
        default = "" if option.default is None else f" (default {option.default})"
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=option.type,
            default=option.default,
            metavar=option.metavar,
            help=option.help + default,
        )


def _add_set_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """The repeatable ``--set KEY=VALUE`` config override, as every command that reads a config has it."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def _predict_project(argv: list[str]) -> str | None:
    """The project a ``predict`` command line names, whose own flags (``--days``, ``--out``) its
    parser then takes."""
    if len(argv) >= 2 and argv[0] == "predict" and argv[1] in registry.project_names():
        return argv[1]
    return None


def main(argv: list[str] | None = None) -> int:
    """Runs one CLI command; returns the process exit status."""
    # Before any command can import a module that imports Keras: the first such import, wherever
    # it happens (a project's predict module, a demo once it has found a display), drops the
    # backend's start-up lines. Commands that need no Keras (list, runs, --help) never load it.
    quiet_keras_import()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # -q is accepted anywhere (`python -m common train mnist -q`), not only before the command;
        # a demo's own arguments, after the project name, are left as they are.
        quiet = any(arg in QUIET_FLAGS for arg in argv[: _own_arguments_end(argv)])
        argv = [
            arg
            for index, arg in enumerate(argv)
            if index >= _own_arguments_end(argv) or arg not in QUIET_FLAGS
        ]
        parser = _build_parser(_predict_project(argv))
        options = parser.parse_args(argv)
        options.quiet = options.quiet or quiet
        logging.basicConfig(
            level=logging.WARNING if options.quiet else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )
        # JAX logs at INFO that it found no TPU or GPU ("Unable to initialize backend 'tpu'").
        logging.getLogger("jax").setLevel(logging.WARNING)
        return _run(options)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): nothing left to say, and no traceback about it.
        sys.stdout = None
        return 0


def _own_arguments_end(argv: list[str]) -> int:
    """Where a demo's own arguments start (after ``demo <project>``); the end otherwise."""
    positional = [index for index, arg in enumerate(argv) if not arg.startswith("-")]
    if len(positional) >= 2 and argv[positional[0]] == "demo":
        return positional[1] + 1
    return len(argv)


def _run(options: argparse.Namespace) -> int:
    """Runs the command's function from :data:`COMMANDS`."""
    return COMMANDS[options.command](options)


def _list(options: argparse.Namespace) -> int:
    """Reads folders, declarations and docstrings only: no Keras. A broken project is one line
    among the others."""
    for name in registry.project_names():
        try:
            project = registry.get_project(name)
        except UserError as error:
            print(f"{name:10} cannot be used: {error}")
            continue
        configs = ", ".join(paths.in_repository(path) for path in project.config_variants())
        print(f"{name:10} {project.summary()}\n{'':10} configs: {configs}")
    return 0


def _config(options: argparse.Namespace) -> int:
    """Resolves and checks the config as ``train`` would, without Keras, data or a run folder."""
    from common.core.config import describe

    project = registry.get_project(options.project)
    print(describe(project.load_config(options.config, options.set)))
    return 0


def _new(options: argparse.Namespace) -> int:
    from common import scaffold

    for path in scaffold.create_project(options.name, options.like, commands=tuple(COMMANDS)):
        print(f"wrote {paths.in_repository(path)}")
    print(
        f"next: python -m common train {options.name} --promote (the run answers from then on), "
        f"then python -m common predict {options.name} ..."
    )
    return 0


def _serve(options: argparse.Namespace) -> int:
    from common.serving import app

    app.serve(
        options.host,
        options.port,
        quiet=options.quiet,
        models=options.models,
        max_batch=options.max_batch,
        max_wait_ms=options.max_wait_ms,
        runtime=options.runtime,
    )
    return 0


def _tune(options: argparse.Namespace) -> int:
    from common.experiments import tuning

    project = registry.get_project(options.project)
    table, best_file = tuning.run_search(project, options.config, options.set, options.name, options.trials)
    if not table.empty:
        print(table.to_string(index=False))
        print(f"results: {tuning.tune_dir(project.name, options.name) / tuning.RESULTS_FILE}")
        print(f"best config: {best_file} (python -m common train {project.name} --config {best_file})")
    log.info(
        "no trial is promoted: predict, evaluate, the demos and serve still answer with %s",
        runs.default_model_summary(project.name),
    )
    return 0


def _promote(options: argparse.Namespace) -> int:
    project = registry.get_project(options.project)
    if options.clear == (options.run is not None):
        raise UserError(
            f"promote needs a run or --clear, not {'both' if options.clear else 'neither'}: "
            f"python -m common promote {project.name} RUN (see `python -m common runs {project.name}`)"
        )
    run_dir = None if options.clear else runs.check_promotable(project.name, options.run)
    if run_dir is not None and runs.is_stand_in(run_dir):
        log.warning(
            "%s was trained on a stand-in for the project's data (%s)",
            run_dir.name,
            runs.read_metrics(run_dir).get("data_source"),
        )
    runs.promote(project.name, run_dir)
    print(_answering(project))
    return 0


def _runs(options: argparse.Namespace) -> int:
    from common.experiments import runs_table  # Reads the run folders' files: no Keras.

    project = registry.get_project(options.project)
    rows = runs_table.list_runs(project, options.sort)
    if options.json:
        print(strict_json(rows, indent=2))
    else:
        print(runs_table.format_runs(rows))
        print(f"answers by default: {runs.default_model_summary(project.name)}")
    return 0


def _compare(options: argparse.Namespace) -> int:
    from common.experiments import runs_table  # Reads the run folders' files: no Keras.

    project = registry.get_project(options.project)
    run_dirs = runs_table.resolve_runs(project, options.runs)
    out_path = options.out or runs_table.default_comparison_path(project.name)
    print(runs_table.compare(project, run_dirs, out_path))
    return 0


def _distill(options: argparse.Namespace) -> int:
    """Training with a teacher: ``train --set distill.teacher=RUN``; ``--resume`` is train's own.
    A project that is no classifier is refused by the config's checks (its loss)."""
    options.set = [*options.set, f"distill.teacher={json.dumps(options.teacher)}"]
    options.resume = None
    return _train(options)


def _train(options: argparse.Namespace) -> int:
    """The whole config is checked before Keras is imported, any data read or any folder made."""
    project = registry.get_project(options.project)
    config_file = options.config
    if options.resume is not None:
        if options.set or options.config or options.name:
            raise UserError(
                "--resume continues a run with its own config and name; to change them, train "
                "a new run from its weights: --continue-from RUN_DIR --set ..."
            )
        config_file = str(options.resume / runs.CONFIG_FILE)
    elif options.continue_from is not None:
        config_file = options.config or str(options.continue_from / runs.CONFIG_FILE)
    if config_file and not Path(config_file).is_file() and options.config is None:
        raise UserError(f"{Path(config_file).parent}: not a run folder (no {runs.CONFIG_FILE})")
    config = project.load_config(config_file, options.set)
    steps = _workflow()
    run_dir = steps.train(project, config, options.name, options.resume, continue_from=options.continue_from)
    _report_new_run(project, run_dir, "run saved", options.promote)
    return 0


def _demo(options: argparse.Namespace) -> int:
    """A demo checks for a display before it loads Keras and its model, so "no display" is
    answered at once."""
    project = registry.get_project(options.project)
    demo = project.functions.demo
    if demo is None:
        raise UserError(f"project '{project.name}' has no demo")
    return int(demo(options.args) or 0)


def _evaluate(options: argparse.Namespace) -> int:
    project = registry.get_project(options.project)
    metrics, out_dir = _inference().evaluate_saved(project, options.model, options.set, options.out)
    print(_headline(project, metrics))
    print(_details(project, metrics))
    print(f"metrics and plots written to {out_dir}")
    return 0


def _export(options: argparse.Namespace) -> int:
    project = registry.get_project(options.project)
    from common.serving import export

    report = export.export(project, options.model, options.format, options.quantize, options.out, options.set)
    print(export.format_report(report))
    return 0


def _ensemble(options: argparse.Namespace) -> int:
    project = registry.get_project(options.project)
    from common.experiments import ensemble

    run_dir = ensemble.build(project, options.models, options.name, options.set)
    _report_new_run(project, run_dir, "ensemble saved", options.promote)
    return 0


def _predict(options: argparse.Namespace) -> int:
    project = registry.get_project(options.project)
    # The project's own flags (--days, --out), as its predict function names them.
    declared = predict_options(project.functions.predict)
    own = {option.name: getattr(options, option.name) for option in declared}
    results = _inference().predict_saved(project, options.inputs, options.model, options.set, **own)
    format_prediction = project.functions.format_prediction
    failed = 0
    for result in results:
        if "error" in result:
            # One line per input that could not be read; the others are still answered.
            print(f"error: {result['error']}", file=sys.stderr, flush=True)
            failed += 1
        elif options.json or format_prediction is None:
            print(strict_json(result), flush=True)
        else:
            print(format_prediction(result), flush=True)
    return 2 if failed else 0


# Each command's function; the parser above defines its arguments.
COMMANDS = {
    "list": _list,
    "config": _config,
    "new": _new,
    "serve": _serve,
    "train": _train,
    "distill": _distill,
    "tune": _tune,
    "runs": _runs,
    "compare": _compare,
    "promote": _promote,
    "evaluate": _evaluate,
    "predict": _predict,
    "ensemble": _ensemble,
    "export": _export,
    "demo": _demo,
}


def _report_new_run(project: Project, run_dir: Path, saved: str, promote: bool) -> None:
    """After a run (or an ensemble) completes: its headline, where it is, whether it now answers
    (promoted when asked, else what answers is unchanged), then the details."""
    metrics = json.loads((run_dir / runs.METRICS_FILE).read_text())
    print(_headline(project, metrics))
    print(f"{saved} to {run_dir}")
    if promote:
        runs.promote(project.name, runs.check_promotable(project.name, str(run_dir)))
        print(_answering(project))
    else:
        log.info(
            "not promoted: predict, evaluate, the demos and serve still answer with %s "
            "(to answer with this run: python -m common promote %s %s)",
            runs.default_model_summary(project.name),
            project.name,
            run_dir.name,
        )
    print(_details(project, metrics))


def _answering(project: Project) -> str:
    """What predict, evaluate, the demos and serve now answer with, its data and recorded score."""
    answering = runs.default_model_dir(project.name)
    if answering is None:
        return f"{project.name}: no run is promoted and the project ships no model; predict needs --model"
    described = runs.describe_model(project, answering / runs.MODEL_FILE)[0]
    return f"{project.name}: predict, evaluate, the demos and serve answer with the {described}"


def _inference():
    """Loading and answering with saved models (no training machinery), imported when asked for."""
    from common.serving import loading

    return loading


def _workflow():
    """Training's five steps, imported when asked for."""
    from common.training import steps

    return steps


def _headline(project, metrics: dict) -> str:
    """The headline score beside its trivial baseline, then the project's own report when it has
    one (stock's table of scores beside persistence, and its verdict)."""
    metric, baseline, meaning = project.headline.metric, project.headline.baseline, project.headline.meaning
    lines = []
    if _is_number(metrics.get(metric)):
        line = f"{metric}: {metrics[metric]:.4f}"
        if baseline and _is_number(metrics.get(baseline)):
            line += f", against {metrics[baseline]:.4f} for the trivial baseline"
            if "baseline_class" in metrics:
                line += f" (always answering {metrics['baseline_class']!r}, the most frequent class)"
        elif meaning:
            line += f" ({meaning})"
        lines.append(line)
        warning = project.headline.no_better(metrics)
        if warning:
            lines.append(f"warning: {warning}")
    format_report = project.functions.format_report
    if format_report is not None:
        lines.append(format_report(metrics))
    return "\n".join(lines)


def _details(project, metrics: dict) -> str:
    """Every other number and word of ``metrics.json``, alphabetically, under a heading."""
    shown = {project.headline.metric, project.headline.baseline}
    lines = ["details (metrics.json):"]
    for key, value in sorted(metrics.items()):
        if key in shown or isinstance(value, bool):
            continue
        if isinstance(value, float):
            lines.append(f"{key:>24}: {value:.4f}")
        elif isinstance(value, (int, str)):
            lines.append(f"{key:>24}: {value}")
    return "\n".join(lines)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


if __name__ == "__main__":
    sys.exit(main())
