"""The live window: the webcam (or a still photo) with each face's emoji beside it, updated live.

Run: make demo-emojify   (or: python -m common demo emojify [--image PHOTO] [--camera 0] [--model PATH])
Tkinter comes with Python; frames are shown through Pillow. The camera is opened once, and each
frame goes through the same ``FaceReader`` as ``predict``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.core.errors import UserError
from common.kit.tk_window import open_tk_window

# Short enough for one line over a 640-pixel webcam frame.
SYNTHETIC_NOTICE = "NOT FER2013: this model learnt from synthetic drawn faces, not real ones"


class EmojiWindow:
    """A Tk window showing annotated frames from ``next_frame`` until it returns ``None``.

    Args:
        root: the Tk root window.
        reader: a ``FaceReader`` (``process_frame(rgb) -> (faces, annotated)``).
        next_frame: returns the next RGB frame, or ``None`` when there is none.
        live: keep reading frames (webcam); ``False`` shows one frame (a photo).
        notice: a warning shown in red above the picture for as long as the window is open
            (``SYNTHETIC_NOTICE`` for a model trained on the synthetic sample).
    """

    def __init__(self, root, reader, next_frame, live: bool = True, notice: str = "") -> None:
        import tkinter as tk

        self.root = root
        self.reader = reader
        self.next_frame = next_frame
        self.live = live
        self.photo: Any = None  # Tk shows an image only while a reference to it is kept.
        self.faces: list[dict] = []
        self.frames_shown = 0
        self.started = time.perf_counter()
        self.notice = None
        if notice:
            self.notice = tk.Label(
                root, text=notice, font=("Helvetica", 14, "bold"), fg="white", bg="#c0392b", padx=8, pady=4
            )
            self.notice.pack(fill="x")
        self.picture = tk.Label(root)
        self.picture.pack()
        self.status = tk.Label(root, text="", font=("Helvetica", 14), anchor="w")
        self.status.pack(fill="x", padx=8, pady=4)
        root.bind("<Escape>", lambda event: root.destroy())
        root.bind("q", lambda event: root.destroy())

    def show_next(self) -> bool:
        """Reads, processes and shows one frame; ``False`` when there was no frame."""
        from PIL import Image, ImageTk

        frame = self.next_frame()
        if frame is None:
            return False
        self.faces, annotated = self.reader.process_frame(frame)
        self.photo = ImageTk.PhotoImage(Image.fromarray(annotated))
        self.picture.configure(image=self.photo)
        self.frames_shown += 1
        elapsed = time.perf_counter() - self.started
        labels = ", ".join(face["label"] for face in self.faces) or "no face"
        rate = f"  {self.frames_shown / elapsed:4.1f} fps" if self.live and elapsed > 0 else ""
        self.status.configure(text=f"{labels}{rate}   (Esc to quit)")
        return True

    def run(self) -> None:
        """Shows frames until the window closes or the source runs dry."""

        def tick() -> None:
            if not self.show_next():
                self.status.configure(text="the camera stopped sending frames")
                return
            if self.live:
                self.root.after(1, tick)

        tick()
        self.root.mainloop()


def demo(argv: list[str]) -> int:
    """Opens the live window; says so in one line when there is no display or no camera."""
    parser = argparse.ArgumentParser(prog="python -m common demo emojify")
    parser.add_argument("--image", help="show a still photo instead of the webcam")
    parser.add_argument("--camera", type=int, default=0, help="webcam index (default 0)")
    parser.add_argument(
        "--model",
        help="run folder, .keras file or latest (default: the promoted run, else the shipped model)",
    )
    options = parser.parse_args(argv)

    from common.kit.images import read_image

    photo = read_image(options.image, mode="RGB") if options.image else None
    root = open_tk_window("the emoji window", "python -m common predict emojify PHOTO --out annotated.png")

    from common.core import registry
    from common.serving import loading
    from projects.emojify.predict import FaceReader

    capture = None
    try:
        model, config, model_file = loading.load_saved(registry.get_project("emojify"), options.model)
        reader = FaceReader.from_config(model, config)
        synthetic = trained_on_synthetic(model_file, config)
        notice = SYNTHETIC_NOTICE if synthetic else ""
        prefix = "NOT FER2013 (synthetic-face model) - " if synthetic else ""
        if photo is not None:
            frames = iter([photo])
            window = EmojiWindow(root, reader, lambda: next(frames, None), live=False, notice=notice)
            root.title(f"{prefix}emojify: {options.image}")
        else:
            capture, first = open_camera(options.camera)
            pending = [first]

            def next_frame() -> np.ndarray | None:
                frame = pending.pop() if pending else read_frame(capture)
                # Shown as a mirror, as people expect of a camera pointed at themselves.
                return None if frame is None else np.ascontiguousarray(frame[:, ::-1])

            window = EmojiWindow(root, reader, next_frame, live=True, notice=notice)
            root.title(f"{prefix}emojify: camera {options.camera}, model {model_file}")
        window.run()
    except BaseException:
        root.destroy()
        raise
    finally:
        if capture is not None:
            capture.release()
    return 0


def trained_on_synthetic(model_file: Path, config) -> bool:
    """Whether a model was trained on the synthetic sample rather than on FER2013.

    Its run folder's ``metrics.json`` says so (``synthetic_data``), also when training fell back to
    the sample because FER2013 was missing; ``data.synthetic`` in its config says so when asked for.
    """
    if getattr(config.data, "synthetic", False):
        return True
    try:
        metrics = json.loads((Path(model_file).parent / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(metrics.get("synthetic_data")) if isinstance(metrics, dict) else False


def open_camera(index: int):
    """Opens the webcam once and reads a first frame; a one-line error if there is none."""
    import cv2

    # OpenCV's own warnings about the missing device would bury the one line that matters.
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        capture = cv2.VideoCapture(index)
    finally:
        cv2.utils.logging.setLogLevel(previous)
    if not capture.isOpened():
        capture.release()
        raise UserError(f"no camera found (camera {index} could not be opened); try --image PHOTO")
    frame = read_frame(capture)
    if frame is None:
        capture.release()
        raise UserError(f"camera {index} opened but sent no picture; try --image PHOTO")
    return capture, frame


def read_frame(capture) -> np.ndarray | None:
    """The next webcam frame as RGB, or ``None``."""
    import cv2

    ok, frame = capture.read()
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None
