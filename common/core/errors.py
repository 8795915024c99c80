"""The one exception type that the CLI turns into a single clear line instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A problem the user can fix: bad config, missing or corrupt input, unknown project.

    The message must say what is wrong and what to do about it, in one line.

    ``choices``, where a value the user gave (or left to its default) was wrong and the right one
    is among a few known ones, names them by option: ``{"column": ["Open", "Adj Close"]}`` says
    that ``predict``'s ``column`` option could take one of these. The web app returns them beside
    the error, so a page can offer them to pick instead of the message alone.
    """

    def __init__(self, *args: object, choices: dict[str, list[str]] | None = None) -> None:
        super().__init__(*args)
        self.choices = choices or {}


class Interrupted(UserError):
    """A training stopped by Ctrl-C or SIGTERM (its run folder left resumable where an epoch was
    committed): a caller running several trainings stops them all rather than going on."""


def per_input(inputs: Iterable[T], work: Callable[[T], dict]) -> Iterator[dict]:
    """Runs ``work`` on each input in turn, yielding its result, or ``{"input", "error"}`` when
    it raises :class:`UserError`, so one bad file does not cancel the others. Nothing is read
    before its turn: a thousand photos take the memory of one."""
    for item in inputs:
        try:
            yield work(item)
        except UserError as error:
            message = str(error)
            yield {"input": str(item), "error": message if str(item) in message else f"{item}: {message}"}
