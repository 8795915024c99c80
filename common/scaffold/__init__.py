"""``python -m common new NAME --like TEMPLATE|PROJECT``: a fourth project in one command.

It writes ``projects/<name>/`` (config with comments, settings, data, model, evaluation beside a
baseline, prediction, README) and ``tests/test_<name>.py`` from a template folder in
``common/scaffold/templates/``: ``classifier``, an image classifier that trains offline on the digits
scikit-learn ships; ``series``, a forecaster on a generated series; ``text``, a text classifier
of raw text (a ``TextVectorization`` layer inside the model) on generated customer messages; or
``tabular``, a binary classifier of a table on scikit-learn's breast-cancer tumours, with a focal
loss, metric objects, class weights and a callback of its own. ``--like`` takes a template's name
or a project's, meaning the template that project declares it is like (``Project(like=...)``).
Right after it, ``make train-<name> ARGS=--promote``, ``predict``, ``runs`` and ``make test``
work; then the user replaces the data loader and the model with their own.

May import only ``common.core``: writing a project needs no Keras.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path
from string import Template

from common.core import registry
from common.core.errors import UserError
from common.core.paths import PROJECTS_DIR, ROOT

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# Short enough that every generated line stays within the house's 110 columns.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,23}")
# Names a project cannot have: models/pretrained/ holds the shipped models, a project named as a
# package of the template's would shadow it on import, and models/<name>/ would mix with them.
RESERVED_NAMES = ("bench", "common", "data", "docs", "models", "pretrained", "projects", "tests")


def templates() -> list[str]:
    """The template folders' names."""
    return sorted(path.name for path in TEMPLATES_DIR.iterdir() if (path / "__init__.py.tmpl").is_file())


def like_choices() -> dict[str, str]:
    """What ``--like`` accepts: each template's name, and each project that declares a template,
    mapped to that template."""
    choices = {name: name for name in templates()}
    for project in registry.project_names():
        try:
            like = registry.get_project(project).like
        except UserError:
            continue  # A half-written project of the user's is no model for a new one.
        if like in choices and project not in choices:
            choices[project] = like
    return choices


def create_project(
    name: str,
    like: str = "classifier",
    projects_dir: Path = PROJECTS_DIR,
    tests_dir: Path = ROOT / "tests",
    commands: Collection[str] = (),
) -> list[Path]:
    """Writes a new project folder and its test file; returns the files written.

    Args:
        commands: the command line's verbs (``train``, ``list``...), which no project may be
            named: a project named like one reads as that command (``python -m common runs list``).

    Raises:
        UserError: the name is not a lowercase Python identifier, is taken, is a command, or
            ``like`` is unknown.
    """
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise UserError(
            f"new {name!r}: use a lowercase Python name of up to 24 letters, digits or _, e.g. new sensors"
        )
    if name in RESERVED_NAMES:
        raise UserError(
            f"new {name}: the name is taken by the template's own folders ({', '.join(RESERVED_NAMES)}); "
            "choose another"
        )
    if name in commands:
        raise UserError(
            f"new {name}: {name!r} is a command of python -m common ({', '.join(sorted(commands))}), and a "
            f"project named like one reads as that command; choose another name, e.g. new my_{name}"
        )
    choices = like_choices()
    if like not in choices:
        raise UserError(f"--like {like!r}: choose one of {', '.join(choices)}")
    folder = projects_dir / name
    test_file = tests_dir / f"test_{name}.py"
    # lexists: a dangling symlink counts as taken, so nothing is ever written through one.
    taken = next((path for path in (folder, test_file) if os.path.lexists(path)), None)
    if taken is not None:
        raise UserError(f"new {name}: {taken} already exists; choose another name")
    template_dir = TEMPLATES_DIR / choices[like]
    values = {"name": name, "like": like, "title": name.replace("_", " ").capitalize()}
    rendered = {
        template.name.removesuffix(".tmpl"): Template(template.read_text()).substitute(values)
        for template in sorted(template_dir.glob("*.tmpl"))
    }
    test_text = rendered.pop("test.py")
    # All or nothing: the project is written in a hidden folder beside its place and renamed into
    # it once whole; the test file is created exclusively (never through an existing path).
    projects_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=projects_dir))
    test_written = False
    try:
        for file_name, text in rendered.items():
            (partial / file_name).write_text(text)
        with open(test_file, "x") as file:
            test_written = True
            file.write(test_text)
        os.rename(partial, folder)
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        if test_written:
            test_file.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UserError(f"new {name}: could not write the project: {error}") from None
        raise
    return [folder / file_name for file_name in rendered] + [test_file]
