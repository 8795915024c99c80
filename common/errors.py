"""The one exception type that the CLI turns into a single clear line instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix: bad config, missing or corrupt input, unknown project.

    The message must say what is wrong and what to do about it, in one line.
    """
