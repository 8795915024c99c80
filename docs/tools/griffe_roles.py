"""A Griffe extension for the API page: the docstrings' reStructuredText roles read as Markdown.

The code's docstrings name other objects as Sphinx does (``:class:`Splits```, ``:func:`per_input```)
and end a sentence before an example with ``::``. In Markdown those show as raw markup, so each
role becomes inline code of its name (``~a.b.C`` shows ``C``, as in Sphinx) and ``::`` one colon.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.MULTILINE)


def as_markdown(docstring: str) -> str:
    """The docstring with its roles as inline code and its ``::`` as ``:``."""

    def code(match: re.Match) -> str:
        tilde, name = match.groups()
        return f"`{name.rsplit('.', 1)[-1] if tilde else name}`"

    return LITERAL_BLOCK.sub(":", ROLE.sub(code, docstring))


class ReadRolesAsCode(Extension):
    """Rewrites every docstring once the objects are loaded."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = as_markdown(obj.docstring.value)
