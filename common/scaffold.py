"""``python -m common new NAME --like mnist|emojify|stock``: a fourth project in one command.

It writes ``projects/<name>/`` (config with comments, settings, data, model, evaluation beside a
baseline, prediction, README) and ``tests/test_<name>.py`` from the templates in
``common/templates/``: an image classifier (like mnist and emojify) that trains offline on the
digits scikit-learn ships, or a series forecaster (like stock) on a generated series. Right after
it, ``make train-<name> ARGS=--promote``, ``predict``, ``runs`` and ``make test`` work; then the user replaces
the data loader and the model with their own.
"""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from pathlib import Path
from string import Template

from common.errors import UserError
from common.registry import PROJECTS_DIR, ROOT

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# Which template each existing project is like.
KINDS = {"mnist": "classifier", "emojify": "classifier", "stock": "series"}
# Short enough that every generated line stays within the house's 110 columns.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,23}")


def create_project(
    name: str, like: str = "mnist", projects_dir: Path = PROJECTS_DIR, tests_dir: Path = ROOT / "tests"
) -> list[Path]:
    """Writes a new project folder and its test file; returns the files written.

    Raises:
        UserError: the name is not a lowercase Python identifier, is taken, or ``like`` is unknown.
    """
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise UserError(
            f"new {name!r}: use a lowercase Python name of up to 24 letters, digits or _, e.g. new sensors"
        )
    if like not in KINDS:
        raise UserError(f"--like {like!r}: choose one of {', '.join(KINDS)}")
    folder = projects_dir / name
    test_file = tests_dir / f"test_{name}.py"
    # lexists: a dangling symlink counts as taken, so nothing is ever written through one.
    taken = next((path for path in (folder, test_file) if os.path.lexists(path)), None)
    if taken is not None:
        raise UserError(f"new {name}: {taken} already exists; choose another name")
    templates = TEMPLATES_DIR / KINDS[like]
    values = {"name": name, "like": like, "title": name.replace("_", " ").capitalize()}
    rendered = {
        template.name.removesuffix(".tmpl"): Template(template.read_text()).substitute(values)
        for template in sorted(templates.glob("*.tmpl"))
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
