"""Mutation testing: would the fast suite notice a plausible one-line bug?

``make mutation`` (``python -m tests.mutation``) makes small changes to the modules where the
project's promises live (``<`` for ``<=``, ``and`` for ``or``, ``1`` for ``0``, a loop that never
runs, an ``except`` that no longer catches...), one at a time, with Cosmic Ray's operators, and
runs against each the module's fast tests that execute the mutated line (coverage tells which).
A mutant the tests fail on is *killed*; one they pass is a *survivor*: a bug the suite would let
through. The score is the share killed.

Bounded on 2 cores: each module gets at most ``--sample`` mutants, drawn by a hash of what they
change (the same draw on every machine and every run, until the module's code changes), and the
mutants run in ``--jobs`` copies of the repository side by side, never in your working tree (an
interrupted run leaves no mutant behind). docs/testing.md gives the score, the time it took and
every survivor with why it survives.

    python -m tests.mutation                       # every module below, 2 copies in parallel
    python -m tests.mutation common/core/config.py      # one module (the paths below)
    python -m tests.mutation --write               # also write docs/mutation-report.md
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent

# Each module where a promise lives, with the fast test files that may reach it. Generous: each
# mutant runs only the tests among these that execute its line.
_RUN_TESTS = [
    "tests/test_workflow.py",
    "tests/test_registry_and_runs.py",
    "tests/test_resume.py",
    "tests/test_damaged_runs.py",
    "tests/test_run_files.py",
]
TARGETS: dict[str, list[str]] = {
    "common/core/config.py": ["tests/test_config.py", "tests/test_cli.py"],
    "common/core/runs.py": [
        *_RUN_TESTS,
        "tests/test_promote.py",
        "tests/test_experiments.py",
        "tests/test_cli.py",
    ],
    "common/core/files.py": [*_RUN_TESTS, "tests/test_config.py"],
    "common/training/checkpoints.py": [*_RUN_TESTS, "tests/test_emojify.py"],
    "common/kit/batches.py": [
        "tests/test_batches.py",
        "tests/test_workflow.py",
        "tests/test_streaming.py",
        "tests/test_keras_projects.py",
    ],
    "common/training/steps.py": [
        *_RUN_TESTS,
        "tests/test_promote.py",
        "tests/test_cli.py",
        "tests/test_streaming.py",
        "tests/test_keras_projects.py",
    ],
    "common/experiments/ensemble.py": ["tests/test_ensemble.py"],
    "common/experiments/tuning.py": ["tests/test_tune.py"],
    "common/serving/app.py": ["tests/test_serve.py"],
    "common/serving/batching.py": ["tests/test_serve.py", "tests/test_keras_projects.py"],
    "common/kit/classification.py": ["tests/test_classification.py", "tests/test_mnist.py"],
    "projects/mnist/data.py": ["tests/test_mnist.py"],
    "projects/mnist/evaluate.py": ["tests/test_mnist.py"],
    "projects/emojify/data.py": ["tests/test_emojify.py", "tests/test_streaming.py"],
    "projects/emojify/evaluate.py": ["tests/test_emojify.py"],
    "projects/stock/data.py": ["tests/test_stock.py"],
    "projects/stock/evaluate.py": ["tests/test_stock.py"],
    "projects/stock/significance.py": ["tests/test_stock.py"],
    "projects/stock/intervals.py": ["tests/test_stock.py"],
}

# The plausible one-line bugs: a comparison, a boolean, a constant off by one, an arithmetic
# operator among + - * / // % **, a sign, a `not` added or dropped, a loop that never runs, a
# break for a continue, an except clause that no longer catches. Left out: Cosmic Ray's bit-shift
# and bitwise replacements of arithmetic (a float crashes on them, so any test kills them and they
# only inflate the score), and its variable replacer/inserter (random, so not the same twice).
OPERATORS = re.compile(
    r"core/("
    r"ReplaceComparisonOperator_.*"
    r"|ReplaceBinaryOperator_(Add|Sub|Mul|Div|FloorDiv|Mod|Pow)_(Add|Sub|Mul|Div|FloorDiv|Mod|Pow)"
    r"|ReplaceUnaryOperator_(USub_UAdd|Delete_USub|Delete_Not)"
    r"|AddNot|ReplaceTrueWithFalse|ReplaceFalseWithTrue|ReplaceAndWithOr|ReplaceOrWithAnd"
    r"|ReplaceBreakWithContinue|ReplaceContinueWithBreak|NumberReplacer|ZeroIterationForLoop"
    r"|ExceptionReplacer"
    r")$"
)
SKIP_PRAGMA = "pragma: no mutate"
IMPORT_TIME = "(import)"


@dataclass
class Outcome:
    module: str
    line: int
    operator: str
    killed: bool
    diff: str = ""
    note: str = ""


@dataclass
class ModuleResult:
    module: str
    seconds: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    error: str = ""


def _copy_tree(destination: Path) -> None:
    """The repository's files (committed and new, not ignored ones) into ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _mutants(module: Path, sample: int):
    """The module's mutants of the chosen operators, ``sample`` of them by a stable hash."""
    from cosmic_ray.commands.init import init
    from cosmic_ray.work_db import WorkDB, use_db

    lines = module.read_text(encoding="utf-8").splitlines()
    with tempfile.TemporaryDirectory() as scratch:
        with use_db(str(Path(scratch) / "session.sqlite"), WorkDB.Mode.create) as db:
            init([module], db, {})
            items = list(db.pending_work_items)
    chosen = []
    for item in items:
        (mutation,) = item.mutations
        line = mutation.start_pos[0]
        if not OPERATORS.match(mutation.operator_name) or SKIP_PRAGMA in lines[line - 1]:
            continue
        key = f"{module.name}:{mutation.operator_name}:{mutation.occurrence}"
        chosen.append((hashlib.sha256(key.encode()).hexdigest(), mutation))
    chosen.sort(key=lambda pair: pair[0])
    picked = [mutation for _, mutation in chosen[:sample]] if sample else [m for _, m in chosen]
    return sorted(picked, key=lambda m: (m.start_pos, m.operator_name, m.occurrence)), len(chosen)


def _pytest(copy: Path, arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments]


def _command(copy: Path, arguments: list[str]) -> str:
    """A shell command for Cosmic Ray: pytest with ``arguments``, run inside ``copy``."""
    inner = f"cd {shlex.quote(str(copy))} && {shlex.join(_pytest(copy, arguments))}"
    return f"sh -c {shlex.quote(inner)}"


def _tests_by_line(
    copy: Path, module: str, tests: list[str], timeout: float
) -> tuple[dict[int, list[str]], dict[str, float]] | str:
    """Runs ``tests`` once, unmutated, under coverage with one context per test: for each line of
    ``module``, the tests that ran it, and how long each test took. A string says why that
    failed (the tests fail unmutated)."""
    from coverage import CoverageData

    data_file, report = copy / ".coverage-mutation", copy / ".junit-mutation.xml"
    package = module.split("/")[0]
    arguments = ["-x", f"--cov={package}", "--cov-context=test", "--cov-report=", f"--junitxml={report}"]
    completed = subprocess.run(
        _pytest(copy, [*arguments, *tests]),
        cwd=copy,
        env={**os.environ, "COVERAGE_FILE": str(data_file)},
        capture_output=True,
        text=True,
        timeout=timeout * 4,
    )
    if completed.returncode != 0:
        return "the tests fail without any mutation:\n" + (completed.stdout + completed.stderr)[-2000:]
    data = CoverageData(basename=str(data_file))
    data.read()
    # A line run while the tests were being collected (a module-level constant, a def, an import)
    # has the empty context: every test that uses the module depends on it.
    by_line = {
        line: sorted({context.rsplit("|", 1)[0] if "::" in context else IMPORT_TIME for context in contexts})
        for line, contexts in data.contexts_by_lineno(str((copy / module).resolve())).items()
    }
    seconds = {}
    for case in ElementTree.parse(report).iter("testcase"):
        # classname "tests.test_x" (or "tests.test_x.Class"), name "test_y[param]".
        module_part, _, class_part = case.get("classname", "").partition(".Test")
        nodeid = module_part.replace(".", "/") + ".py::" + (f"Test{class_part}::" if class_part else "")
        seconds[nodeid + case.get("name", "")] = float(case.get("time", 0.0))
    return by_line, seconds


def _run_module(
    module: str, tests: list[str], copy: Path, sample: int, timeout: float, budget: float
) -> ModuleResult:
    """Each sampled mutant against the tests that run its line (coverage saw them do it; for a
    line run at import, every test that reaches the module), the fastest first, as many as fit in
    ``budget`` seconds of their unmutated time (at least one).
    A mutant on a line no test runs in-process is a survivor without a run. So the score errs
    low, never high: a survivor may still die by a test left out of the budget, or by one that
    runs the code in a subprocess, which coverage does not see."""
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_item import TestOutcome

    result = ModuleResult(module)
    start = time.monotonic()
    present = [test for test in tests if (copy / test).is_file()]
    if not present:
        result.error = f"none of its test files exist: {', '.join(tests)}"
        return result
    measured = _tests_by_line(copy, module, present, timeout)
    if isinstance(measured, str):
        result.error = measured
        return result
    by_line, seconds = measured
    mutants, _ = _mutants(copy / module, sample)
    for mutation in mutants:
        lines = range(mutation.start_pos[0], mutation.end_pos[0] + 1)
        covering = {test for line in lines for test in by_line.get(line, [])}
        if IMPORT_TIME in covering:
            covering = {test for tests_of_line in by_line.values() for test in tests_of_line}
        covering = sorted(covering - {IMPORT_TIME})
        covering.sort(key=lambda test: seconds.get(test, budget))
        chosen, spent = [], 0.0
        for test in covering:
            if chosen and spent + seconds.get(test, budget) > budget:
                break
            chosen.append(test)
            spent += seconds.get(test, budget)
        note, diff = "", ""
        if chosen:
            outcome = mutate_and_test([mutation], _command(copy, ["-x", *chosen]), timeout)
            killed = outcome.test_outcome != TestOutcome.SURVIVED
            diff = "\n".join(
                line
                for line in (outcome.diff or "").splitlines()
                if line.startswith(("-", "+")) and line[1:2] != line[0]
            )
            if not killed:
                note = (
                    f"passed the {len(chosen)} of {len(covering)} tests that run its line within the budget"
                )
        else:
            killed, note = False, "no test runs its line in-process"
            diff = "  " + (copy / module).read_text(encoding="utf-8").splitlines()[mutation.start_pos[0] - 1]
        result.outcomes.append(
            Outcome(
                module,
                mutation.start_pos[0],
                mutation.operator_name.removeprefix("core/"),
                killed,
                diff,
                note,
            )
        )
        mark = "killed  " if killed else "SURVIVED"
        print(f"  {mark} {module}:{mutation.start_pos[0]} {mutation.operator_name} {note}", flush=True)
    result.seconds = time.monotonic() - start
    return result


def _report(results: list[ModuleResult], wall: float, argv: list[str]) -> str:
    rows = ["| module | mutants | killed | score | time |", "|---|---:|---:|---:|---:|"]
    killed_all = total_all = 0
    for result in results:
        killed = sum(outcome.killed for outcome in result.outcomes)
        total = len(result.outcomes)
        killed_all += killed
        total_all += total
        score = f"{killed / total:.0%}" if total else "-"
        rows.append(f"| {result.module} | {total} | {killed} | {score} | {result.seconds / 60:.1f} min |")
    score = killed_all / total_all if total_all else 0.0
    rows.append(
        f"| **all** | **{total_all}** | **{killed_all}** | **{score:.1%}** | {wall / 60:.1f} min wall |"
    )
    survivors = [outcome for result in results for outcome in result.outcomes if not outcome.killed]
    lines = [
        "# Mutation testing: the latest run",
        "",
        f"Command: `{shlex.join(['python', '-m', 'tests.mutation', *argv])}`",
        "",
        *rows,
        "",
        f"## Survivors ({len(survivors)})",
        "",
    ]
    for outcome in survivors:
        lines += [f"- `{outcome.module}:{outcome.line}` {outcome.operator}: {outcome.note}", "  ```diff"]
        lines += [f"  {line}" for line in outcome.diff.splitlines()] + ["  ```"]
    errors = [result for result in results if result.error]
    if errors:
        lines += ["", "## Modules not run", ""]
        lines += [f"- `{result.module}`: {result.error.splitlines()[0]}" for result in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all {len(TARGETS)})")
    parser.add_argument("--sample", type=int, default=12, help="mutants per module, 0 for all (default 12)")
    parser.add_argument("--jobs", type=int, default=2, help="copies of the repository run side by side")
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds before a test run counts as killed"
    )
    parser.add_argument(
        "--budget", type=float, default=60, help="seconds of (unmutated) test time per mutant (default 60)"
    )
    parser.add_argument("--write", action="store_true", help="write docs/mutation-report.md")
    parser.add_argument("--list", action="store_true", help="only list the sampled mutants")
    args = parser.parse_args(argv)
    unknown = [module for module in args.modules if module not in TARGETS]
    if unknown:
        print(
            f"error: not a mutation target: {', '.join(unknown)}; targets: {', '.join(TARGETS)}",
            file=sys.stderr,
        )
        return 2
    modules = args.modules or list(TARGETS)
    if args.list:
        for module in modules:
            picked, of = _mutants(ROOT / module, args.sample)
            print(f"{module}: {len(picked)} of {of}")
            for mutation in picked:
                print(f"  {mutation.start_pos[0]}: {mutation.operator_name}")
        return 0

    os.environ.setdefault("SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        copies: Queue[Path] = Queue()
        for index in range(max(1, args.jobs)):
            copy = Path(scratch) / f"copy{index}"
            _copy_tree(copy)
            copies.put(copy)

        def one(module: str) -> ModuleResult:
            copy = copies.get()
            try:
                print(f"{module}: against {', '.join(TARGETS[module])}", flush=True)
                return _run_module(module, TARGETS[module], copy, args.sample, args.timeout, args.budget)
            finally:
                copies.put(copy)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(one, modules))
    report = _report(results, time.monotonic() - start, argv)
    print(report)
    if args.write:
        (ROOT / "docs" / "mutation-report.md").write_text(report, encoding="utf-8")
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
