"""Opening a demo's window, with one clear line when there is no Tkinter or no display."""

from __future__ import annotations

import os
import sys

from common.core.errors import UserError


def open_tk_window(purpose: str, alternative: str):
    """Returns a Tk root window for a demo.

    Args:
        purpose: what the window is, for the messages ("the drawing pad").
        alternative: the command to use instead without a display.

    Raises:
        UserError: no Tkinter in this Python, no display, or the window cannot open.
    """
    try:
        import tkinter as tk
    except ImportError:
        raise UserError("this Python has no Tkinter; install your system's python3-tk package") from None
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise UserError(
            f"no display found (DISPLAY is not set): {purpose} needs a desktop; "
            f"use `{alternative}` for files instead"
        )
    try:
        return tk.Tk()
    except tk.TclError as error:
        raise UserError(f"cannot open a window ({error}); {purpose} needs a display") from None
