"""The tutorials of docs/tutorials/ and the documentation site's own code (docs/tools/).

The fast checks read the tutorials and test the link rewriting that lets the README and the
project READMEs be pages of the site. The slow ones run each tutorial as a notebook at
``TUTORIAL_SIZE=small``, as ``make docs`` does, and check what it computed, and build the whole
site with ``--strict``. Skipped where the ``docs`` extra is not installed (``make docs`` installs
it).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "docs" / "tools"

pytest.importorskip("jupytext", reason="the docs extra is not installed (make docs installs it)")
pytest.importorskip("nbclient", reason="the docs extra is not installed (make docs installs it)")


def load_tool(name: str):
    """A module of docs/tools/, imported as MkDocs imports its hooks: by path, beside its folder."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tutorials = load_tool("tutorials")
TUTORIALS = tutorials.tutorial_files()


def test_there_is_one_tutorial_per_pipeline():
    assert [path.name.split("_")[1] for path in TUTORIALS] == ["mnist", "stock", "emojify"]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda path: path.stem)
def test_a_tutorial_is_a_short_percent_format_notebook(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 300
    notebook = tutorials.as_notebook(path)
    kinds = [cell.cell_type for cell in notebook.cells]
    # Opens with its title in Markdown, alternates text and code, and draws at least one figure.
    assert kinds[0] == "markdown" and notebook.cells[0].source.startswith("# ")
    assert kinds.count("code") >= 4 and kinds.count("markdown") >= 4
    assert "plt.show()" in text
    # Figures drawn in the page, even after the template's plots module chose its file backend.
    assert any("%matplotlib inline" in cell.source.splitlines() for cell in notebook.cells)


def test_the_size_is_checked_before_a_kernel_starts(tmp_path):
    with pytest.raises(ValueError, match="TUTORIAL_SIZE is 'tiny'; use one of small, full"):
        tutorials.execute(tutorials.as_notebook(TUTORIALS[0]), "tiny", tmp_path)


# What each tutorial computed, read from its kernel by one cell added at its end: the checks a
# reader relies on (a model that learned, the baseline beside it, the mirror average).
CHECKS = {
    "mnist": (
        "print(test_accuracy, baseline_accuracy, same, metrics['test_accuracy'], run_dir.parent.parent)",
        lambda values, models_dir: (
            float(values[0]) > float(values[1]) + 0.1
            and values[2] == "True"
            and float(values[3]) > float(values[1])
            and Path(values[4]) == models_dir
        ),
    ),
    "stock": (
        "print(*table['rmse_ratio'].round(3), sep=' ')",
        # Four networks and persistence; every network within a few percent of persistence.
        lambda values, models_dir: (
            len(values) == 5
            and values[-1] == "1.0"
            and all(0.9 < float(ratio) < 1.1 for ratio in values[:-1])
        ),
    ),
    "emojify": (
        "print(len(boxes), np.allclose(served, (face + mirror) / 2, atol=1e-5), len(faces))",
        lambda values, models_dir: values[0] == "1" and values[1] == "True" and values[2] == "1",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda path: path.stem)
def test_a_tutorial_runs_and_computes_what_it_says(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    code, holds = CHECKS[path.name.split("_")[1]]
    notebook = tutorials.as_notebook(path)
    notebook.cells.append(nbformat.v4.new_code_cell(code))
    models_before = sorted((ROOT / "models").rglob("*"))
    tutorials.execute(notebook, "small", tmp_path / "models")
    # Nothing was written into the repository's models/: the runs went to MODELS_DIR.
    assert sorted((ROOT / "models").rglob("*")) == models_before
    assert tutorials.images(notebook) >= 1
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert errors == []
    values = notebook.cells[-1].outputs[0].text.split()
    assert holds(values, tmp_path / "models"), values


# The link rewriting of docs/tools/hooks.py, on pages as they lie in the repository.
@pytest.fixture
def hooks():
    pytest.importorskip("mkdocs")
    module = load_tool("hooks")
    module._site_path.clear()
    module._site_path.update(
        {"README.md": "index.md", "projects/mnist/README.md": "projects/mnist/README.md"}
    )
    module._repository_path.clear()
    module._repository_path.update({"index.md": "README.md", "serving.md": "docs/serving.md"})
    return module


@pytest.mark.parametrize(
    ("page", "link", "expected"),
    [
        # The README is the entry page: its links into docs/ drop the folder.
        ("README.md", "docs/serving.md#the-http-api", "serving.md#the-http-api"),
        ("README.md", "projects/mnist/README.md", "projects/mnist/README.md"),
        # The README's link to the built site names the page it became.
        ("README.md", "site/index.html", "index.md"),
        # A page of docs/ reaches the pages outside it, and the README.
        ("docs/serving.md", "../projects/mnist/README.md", "projects/mnist/README.md"),
        ("docs/serving.md", "../README.md", "index.md"),
        ("docs/serving.md", "screenshots/index.png", "screenshots/index.png"),
        # A project README is a page at its own path.
        ("projects/mnist/README.md", "../../README.md", "../../index.md"),
        (
            "projects/mnist/README.md",
            "../../docs/scaling.md#streaming-data",
            "../../scaling.md#streaming-data",
        ),
        # What is not a page is left for --strict to report, and addresses are left alone.
        ("README.md", "projects/mnist/config.toml", "projects/mnist/config.toml"),
        ("README.md", "https://keras.io/", "https://keras.io/"),
        ("README.md", "#layout", "#layout"),
    ],
)
def test_links_are_rewritten_to_the_pages_they_became(hooks, page, link, expected):
    markdown = f'See [the page]({link}) and ![a picture]({link} "its title").\n'
    rewritten = hooks.rewrite_links(markdown, page, "docs")
    assert rewritten == f'See [the page]({expected}) and ![a picture]({expected} "its title").\n'


def test_links_in_code_blocks_are_left_as_written(hooks):
    markdown = "```markdown\n[x](docs/serving.md)\n```\n[x](docs/serving.md)\n"
    assert hooks.rewrite_links(markdown, "README.md", "docs") == (
        "```markdown\n[x](docs/serving.md)\n```\n[x](serving.md)\n"
    )


def test_every_markdown_file_the_pages_link_to_is_in_the_navigation(hooks):
    """A page outside docs/ that a page links to must be listed in mkdocs.yml, or --strict fails
    on it as a page missing from the navigation: this names it sooner."""
    outside = hooks.pages_outside_docs(ROOT / "docs")
    navigation = set(re.findall(r"^\s*-\s+(?:[^:\n]+:\s+)?(\S+\.(?:md|ipynb))$", _mkdocs_yml(), re.MULTILINE))
    assert set(outside.values()) <= navigation
    assert {f"tutorials/{path.stem}.ipynb" for path in TUTORIALS} <= navigation


def _mkdocs_yml() -> str:
    return (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


def test_roles_in_docstrings_read_as_code():
    pytest.importorskip("griffe")
    roles = load_tool("griffe_roles")
    assert roles.as_markdown("Returns a :class:`Splits` (see :func:`~common.core.errors.per_input`)::") == (
        "Returns a `Splits` (see `per_input`):"
    )


def test_every_screenshot_shown_is_taken_by_the_screenshot_command():
    """`make screenshots` retakes docs/screenshots/ through the browser tests' keep_screenshot:
    a picture the docs show that no test takes would go stale unnoticed."""
    taken = set(
        re.findall(
            r'keep_screenshot\(browser, "([\w-]+)"\)', (ROOT / "tests/test_serve_browser.py").read_text()
        )
    )
    shown = {
        name
        for page in (ROOT / "docs").glob("*.md")
        for name in re.findall(r"\(screenshots/([\w-]+)\.png\)", page.read_text(encoding="utf-8"))
    }
    assert shown and shown <= taken
    assert {path.stem for path in (ROOT / "docs" / "screenshots").glob("*.png")} <= taken


@pytest.mark.slow
def test_the_site_builds_strictly_with_its_tutorials_and_api_page(tmp_path):
    """What `make docs` does, into a temporary folder: every page, the tutorials with a figure
    each, the API page with the contract's docstrings."""
    pytest.importorskip("mkdocs")
    import subprocess

    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "TUTORIAL_SIZE": "small", "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Keras 3 project template" in (site / "index.html").read_text()
    for path in TUTORIALS:
        page = (site / "tutorials" / f"{path.stem}.html").read_text()
        assert "data:image/png;base64," in page
        assert (site / "tutorials" / f"{path.stem}.ipynb").is_file()
    api = (site / "api.html").read_text()
    assert "common.core.project.Project" in api and "load_data" in api and ":class:`" not in api
