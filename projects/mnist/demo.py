"""A drawing pad: draw a digit with the mouse, see the prediction and top-3 live.

Run: make demo-mnist   (or: python -m common demo mnist [--model PATH])
Tkinter comes with Python on Linux, macOS and Windows; no extra package is needed.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from common.kit.tk_window import open_tk_window

CANVAS = 280  # Ten times MNIST's size: room to draw, and strokes of MNIST-like proportions.
BRUSH = 18


PROMPT = "Draw a digit"
ANSWER = "Prediction"


class DrawingPad:
    """The window: a white canvas, the predicted digit, and bars for the top 3 classes.

    The drawing is mirrored into a PIL image, which goes through the same ``to_mnist``
    preprocessing as ``predict`` does for image files.
    """

    def __init__(self, root, classify) -> None:
        import tkinter as tk

        self.root = root
        self.classify = classify
        self.image = Image.new("L", (CANVAS, CANVAS), 255)
        self.draw = ImageDraw.Draw(self.image)
        self.last_point: tuple[int, int] | None = None
        self.pending = None

        root.title("MNIST drawing pad")
        self.canvas = tk.Canvas(root, width=CANVAS, height=CANVAS, bg="white", cursor="pencil")
        self.canvas.grid(row=0, column=0, rowspan=6, padx=8, pady=8)
        # The prompt has its own line in a normal font, and the big font is kept for the digit
        # alone: a fixed-width label in the digit's font cut the prompt to "raw a dig".
        self.prompt = tk.Label(root, text=PROMPT, font=("Helvetica", 16))
        self.prompt.grid(row=0, column=1, padx=8, pady=(8, 0))
        self.label = tk.Label(root, text="", font=("Helvetica", 48), width=2)
        self.label.grid(row=1, column=1, padx=8)
        self.bars = [tk.Label(root, text="", font=("Courier", 12), anchor="w", width=22) for _ in range(3)]
        for row, bar in enumerate(self.bars, start=2):
            bar.grid(row=row, column=1, sticky="w", padx=8)
        tk.Button(root, text="Clear (right-click)", command=self.clear).grid(row=5, column=1, pady=8)
        self.canvas.bind("<Button-1>", self.start_stroke)
        self.canvas.bind("<B1-Motion>", self.extend_stroke)
        self.canvas.bind("<ButtonRelease-1>", self.end_stroke)
        self.canvas.bind("<Button-3>", lambda event: self.clear())
        root.bind("<Escape>", lambda event: root.destroy())
        self.result: dict | None = None

    def start_stroke(self, event) -> None:
        self.last_point = (event.x, event.y)
        self.extend_stroke(event)

    def extend_stroke(self, event) -> None:
        start = self.last_point or (event.x, event.y)
        end = (event.x, event.y)
        self.canvas.create_line(
            start[0], start[1], end[0], end[1], width=BRUSH, capstyle="round", smooth=True
        )
        self.draw.line([start, end], fill=0, width=BRUSH)
        radius = BRUSH // 2
        self.draw.ellipse([end[0] - radius, end[1] - radius, end[0] + radius, end[1] + radius], fill=0)
        self.last_point = end
        # Classify at most every 80 ms while drawing, so the window stays responsive.
        if self.pending is None:
            self.pending = self.root.after(80, self.update_prediction)

    def end_stroke(self, event) -> None:
        self.last_point = None
        self.update_prediction()

    def clear(self) -> None:
        self.canvas.delete("all")
        self.draw.rectangle([0, 0, CANVAS, CANVAS], fill=255)
        self.prompt.config(text=PROMPT)
        self.label.config(text="")
        for bar in self.bars:
            bar.config(text="")
        self.result = None

    def update_prediction(self) -> None:
        if self.pending is not None:
            self.root.after_cancel(self.pending)
            self.pending = None
        pixels = np.asarray(self.image)
        if pixels.min() > 128:
            return
        probabilities = self.classify(pixels)
        ranked = np.argsort(probabilities)[::-1][:3]
        self.prompt.config(text=ANSWER)
        self.label.config(text=str(ranked[0]))
        for bar, digit in zip(self.bars, ranked):
            share = float(probabilities[digit])
            bar.config(text=f"{digit} {'█' * int(round(share * 12)):12} {share:6.1%}")
        self.result = {"label": int(ranked[0]), "top3": [int(digit) for digit in ranked]}


def demo(argv: list[str]) -> int:
    """Opens the drawing pad; says so in one line when there is no display."""
    parser = argparse.ArgumentParser(prog="python -m common demo mnist")
    parser.add_argument(
        "--model",
        help="run folder, .keras file or latest (default: the promoted run, else the shipped model)",
    )
    options = parser.parse_args(argv)
    root = open_tk_window("the drawing pad", "python -m common predict mnist IMAGE")

    from common.core import registry
    from common.serving import loading
    from projects.mnist.predict import classify_digits
    from projects.mnist.preprocess import to_mnist

    model, _, model_file = loading.load_saved(registry.get_project("mnist"), options.model)

    def classify(pixels: np.ndarray) -> np.ndarray:
        return classify_digits(model, to_mnist(pixels)[None])[0]

    DrawingPad(root, classify)
    root.title(f"MNIST drawing pad: {model_file}")
    root.mainloop()
    return 0
