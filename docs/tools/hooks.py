"""MkDocs hooks (``hooks:`` in ``mkdocs.yml``): the pages that live outside ``docs/``, and the
tutorials run into notebooks.

- The README is the site's entry page, and every Markdown file of the repository that a page
  links to (a project's README, ``data/README.md``...) becomes a page of its own, at its path in
  the repository. The files stay where a reader of the repository finds them; links between them
  are rewritten to the pages they became, so the same Markdown reads right on disk, on a forge
  and in the site. A link to a file that is not a page is left alone, and ``--strict`` fails on it.
- Each tutorial of ``docs/tutorials/`` is executed (``TUTORIAL_SIZE``, ``small`` by default) into
  a notebook, which the ``mkdocs-jupyter`` plugin renders with its outputs and offers for
  download. A cell that raises stops the build.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tutorials  # noqa: E402 - the folder above is put on the path just before

log = logging.getLogger("mkdocs.hooks")

ROOT = tutorials.ROOT
ENTRY_PAGE = "README.md"
# Where `make docs` writes the site: a link into it (the README's to site/index.html) names the
# page built there.
SITE_FOLDER = "site"
# An inline link or image, ``[text](target)`` or ``![alt](target "title")``: the target is kept
# in group 2 and rewritten; text and title stay as written.
LINK = re.compile(r"(\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
FENCE = re.compile(r"^\s*(```|~~~)")

# Filled by on_files for on_page_markdown: the repository path of every page, by its path in the
# site's sources, and the reverse.
_repository_path: dict[str, str] = {}
_site_path: dict[str, str] = {}
# Where the tutorials' notebooks and run folders are made, until the build ends.
_scratch: Path | None = None


def site_path_of(repository_path: str, docs_dir: str) -> str | None:
    """Where a repository file is in the site's sources, or ``None`` when it is in none."""
    if repository_path in _site_path:
        return _site_path[repository_path]
    if repository_path.startswith(f"{docs_dir}/"):
        return repository_path[len(docs_dir) + 1 :]
    return None


def linked_files(markdown: str, page: str) -> list[str]:
    """The repository paths of the files a Markdown page (at repository path ``page``) links
    to, relative links only, anchors dropped."""
    found = []
    for line in outside_code(markdown):
        for match in LINK.finditer(line):
            target = match.group(2).split("#")[0]
            if target and not is_external(target):
                found.append(posixpath.normpath(posixpath.join(posixpath.dirname(page), target)))
    return found


def outside_code(markdown: str) -> list[str]:
    """The lines of a Markdown text that are not inside a fenced code block."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def is_external(target: str) -> bool:
    """A link with a scheme (``https:``, ``mailto:``), an absolute path or an anchor alone."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target)) or target.startswith(("/", "#"))


def rewrite_links(markdown: str, page: str, docs_dir: str) -> str:
    """``markdown`` (the page at repository path ``page``) with each relative link to a file that
    is in the site made relative to the page it became. A link into the built site itself
    (``site/index.html``) names the source of that page."""
    here = site_path_of(page, docs_dir)
    assert here is not None

    def rewritten(match: re.Match) -> str:
        target = match.group(2)
        path, hash_mark, anchor = target.partition("#")
        if not path or is_external(path):
            return match.group(0)
        in_repository = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
        if in_repository.startswith(f"{SITE_FOLDER}/") and in_repository.endswith(".html"):
            in_repository = _repository_path.get(in_repository[len(SITE_FOLDER) + 1 : -5] + ".md", "")
        there = site_path_of(in_repository, docs_dir)
        if there is None:
            return match.group(0)
        relative = posixpath.relpath(there, posixpath.dirname(here) or ".")
        return f"{match.group(1)}{relative}{hash_mark}{anchor}{match.group(3)}"

    lines, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
        lines.append(line if fenced else LINK.sub(rewritten, line))
    return "".join(lines)


def pages_outside_docs(docs_dir: Path) -> dict[str, str]:
    """Every Markdown file outside ``docs_dir`` that the entry page or a page of ``docs_dir``
    links to, and the ones those link to in turn: repository path -> its path in the site."""
    docs = docs_dir.relative_to(ROOT).as_posix()
    pages = {ENTRY_PAGE: "index.md"}
    queue = [ENTRY_PAGE, *(path.relative_to(ROOT).as_posix() for path in sorted(docs_dir.rglob("*.md")))]
    while queue:
        page = queue.pop()
        for target in linked_files((ROOT / page).read_text(encoding="utf-8"), page):
            outside = not target.startswith(f"{docs}/") and not target.startswith("..")
            if outside and target.endswith(".md") and target not in pages and (ROOT / target).is_file():
                pages[target] = target
                queue.append(target)
    return pages


@event_priority(100)  # Before mkdocs-jupyter's, which must see the notebooks made here.
def on_files(files: Files, config) -> Files:
    docs_dir = Path(config["docs_dir"])
    _site_path.clear()
    _site_path.update(pages_outside_docs(docs_dir))
    _repository_path.clear()
    _repository_path.update({site: repository for repository, site in _site_path.items()})
    for page in docs_dir.rglob("*.md"):
        repository = page.relative_to(ROOT).as_posix()
        _repository_path[page.relative_to(docs_dir).as_posix()] = repository
    for repository, site in _site_path.items():
        files.append(File.generated(config, site, abs_src_path=str(ROOT / repository)))
    for source in tutorials.tutorial_files():
        # A link to a tutorial's source names the page of its notebook.
        _site_path[source.relative_to(ROOT).as_posix()] = f"tutorials/{source.stem}.ipynb"
    for notebook in executed_tutorials(config):
        files.append(notebook)
    return files


def executed_tutorials(config) -> list[File]:
    """Each tutorial run into a notebook in a scratch folder, as a file of the site."""
    global _scratch
    size = os.environ.get(tutorials.SIZE_VARIABLE, "small")
    build = _scratch = Path(tempfile.mkdtemp(prefix="docs-tutorials-"))
    (build / "tutorials").mkdir()
    made = []
    for source in tutorials.tutorial_files():
        log.info("running the tutorial %s (%s=%s)", source.name, tutorials.SIZE_VARIABLE, size)
        notebook = tutorials.execute(tutorials.as_notebook(source), size, build / "runs")
        target = build / "tutorials" / f"{source.stem}.ipynb"
        nbformat.write(notebook, target)
        made.append(
            File(f"tutorials/{target.name}", str(build), config["site_dir"], config["use_directory_urls"])
        )
    return made


def on_post_build(config) -> None:
    """The notebooks are in the site now; their scratch folder and its run folders go."""
    if _scratch is not None:
        shutil.rmtree(_scratch, ignore_errors=True)


def on_page_markdown(markdown: str, page, config, files) -> str:
    repository = _repository_path.get(page.file.src_uri)
    if repository is None:
        return markdown
    docs_dir = Path(config["docs_dir"]).relative_to(ROOT).as_posix()
    return rewrite_links(markdown, repository, docs_dir)
