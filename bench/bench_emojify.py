"""Is emojify fast enough for the live demo? One-face classification and the whole webcam loop.

Run: python bench/bench_emojify.py [--frames 60] [--repeats 3] [--config VARIANT.toml [--set k=v]] [--write]

There is no webcam here, so the "recorded frames" are built: real FER2013 faces (from
``$SHARED_DATA/fer2013/train`` or ``data/fer2013/train`` when present, else the synthetic faces)
enlarged onto 640x480 backgrounds, one or two per frame. Each frame goes through exactly what the
demo does per frame (``FaceReader.process_frame``: detect, crop, classify, draw the emoji); Tk's
own drawing is not included. The shipped model is used if present, else an untrained model of the
default architecture (speed does not depend on the weights). Results are printed, and with
``--write`` recorded in ``bench/results/emojify.md`` with the command and the machine's load
while it ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench import RESULTS_DIR, add_write_argument, report, run, shown  # noqa: E402
from common.core import runs  # noqa: E402
from common.core.config import load_config  # noqa: E402
from common.core.errors import UserError  # noqa: E402
from common.experiments import ensemble  # noqa: E402
from projects.emojify.data import read_face  # noqa: E402
from projects.emojify.faces import crop_faces, to_gray  # noqa: E402
from projects.emojify.model import build_model, serving_size  # noqa: E402
from projects.emojify.predict import FaceReader, annotate, classify_faces  # noqa: E402
from projects.emojify.synthetic import synthetic_faces  # noqa: E402

RESULTS = RESULTS_DIR / "emojify.md"
DEFAULTS = ROOT / "projects" / "emojify" / "config.toml"


def load_model(
    variant: Path | None = None, overrides: list[str] | None = None, model_arg: str | None = None
) -> tuple[keras.Model, object, str]:
    if model_arg is not None:
        # A trained run (an ensemble's, a distilled one), served as its config says.
        from common.core import registry
        from common.serving import loading

        model, config, model_file = loading.load_saved(
            registry.get_project("emojify"), model_arg, ["data.path=", *(overrides or [])], announce=False
        )
        return model, config, f"model {shown(model_file.parent)}"
    if variant is not None:
        config = load_config(DEFAULTS, variant, overrides)
        return build_model(config), config, f"untrained model of {variant.name}"
    pretrained = runs.pretrained_dir("emojify")
    if (pretrained / "model.keras").is_file():
        config = load_config(DEFAULTS, pretrained / "config.toml", ["data.path="])
        return (
            keras.saving.load_model(pretrained / "model.keras", compile=False),
            config,
            f"shipped model {shown(pretrained)}",
        )
    config = load_config(DEFAULTS)
    return build_model(config), config, "untrained model of the default architecture (no shipped model yet)"


def serving_views(config) -> str:
    """How the served model looks at each face (see ``projects.emojify.model.serving_model``)."""
    crops = config.model.test_crops if config.augment.crop else 1
    mirrored = 2 if config.model.mirror_average else 1
    size = serving_size(config)
    square = f" ({size}x{size})" if config.augment.crop else ""
    if crops * mirrored == 1:
        return f"one pass per face{square}"
    kind = f"{crops} crops" if crops > 1 else "the face"
    mirrors = (" and their mirrors" if crops > 1 else " and its mirror") if mirrored > 1 else ""
    return f"averaged over {crops * mirrored} views{square}: {kind}{mirrors}, in one batch"


def networks(model: keras.Model) -> str:
    """``", an ensemble of N networks"`` for a model made by ``python -m common ensemble``."""
    count = len(ensemble.members(model))
    return f", an ensemble of {count} networks averaged" if count > 1 else ""


def source_faces(count: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    shared = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data")) / "fer2013" / "train"
    for folder in (shared, ROOT / "data" / "fer2013" / "train"):
        files = sorted(folder.glob("*/*.jpg")) if folder.is_dir() else []
        if files:
            chosen = rng.choice(len(files), count, replace=False)
            return np.stack([read_face(files[i]) for i in chosen]), f"real FER2013 faces from {folder}"
    return synthetic_faces(count // 7 + 1, int(rng.integers(1000)))[0][:count], "synthetic faces"


def recorded_frames(count: int, rng: np.random.Generator) -> tuple[list[np.ndarray], str, int]:
    """640x480 RGB frames: a textured, lit background with one or two enlarged faces."""
    faces, origin = source_faces(2 * count, rng)
    frames, placed = [], 0
    rows, columns = np.mgrid[0:480, 0:640]
    for index in range(count):
        base = (
            rng.uniform(40, 200) + 40 * np.sin(columns / rng.uniform(40, 200)) + rows * rng.uniform(-0.1, 0.1)
        )
        frame = np.clip(base[..., None] * rng.uniform(0.7, 1.2, 3) + rng.normal(0, 6, (480, 640, 3)), 0, 255)
        frame = frame.astype(np.uint8)
        lefts = (
            [int(rng.integers(20, 160)), int(rng.integers(340, 420))]
            if index % 2
            else [int(rng.integers(150, 300))]
        )
        for slot, left in enumerate(lefts):
            size = int(rng.integers(140, 200))
            top = int(rng.integers(20, 480 - size - 20))
            # FER2013 crops are tight; a little replicated border gives the detector the margin
            # round a face that a camera picture has.
            face = cv2.copyMakeBorder(faces[2 * index + slot], 6, 6, 6, 6, cv2.BORDER_REPLICATE)
            frame[top : top + size, left : left + size] = cv2.resize(
                face, (size, size), interpolation=cv2.INTER_CUBIC
            )[..., None]
            placed += 1
        frames.append(frame)
    return frames, origin, placed


def median_ms(function, repeats: int, warmup: int = 10) -> tuple[float, float]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000), float(np.percentile(times, 90) * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="recorded frames to build")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the frames")
    parser.add_argument("--calls", type=int, default=200, help="one-face classifications to time")
    parser.add_argument(
        "--config",
        type=Path,
        help="time an untrained model of this variant (e.g. projects/emojify/cpu68.toml) instead of the "
        "shipped one: speed does not depend on the weights",
    )
    parser.add_argument(
        "--model", help="time this trained model (a run folder or name, latest) as its config serves it"
    )
    parser.add_argument("--set", action="append", default=[], help="key=value over --config's settings")
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    # Two frames at least: the second, with two faces, times detection and batched classification.
    for name, least in (("frames", 2), ("repeats", 1), ("calls", 1)):
        if getattr(options, name) < least:
            raise UserError(f"--{name} must be at least {least}; received: {getattr(options, name)}")
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    if options.config is not None and options.model is not None:
        raise UserError("give --config (an untrained variant) or --model (a trained run), not both")
    model, config, model_name = load_model(options.config, options.set, options.model)
    reader = FaceReader.from_config(model, config)
    frames, origin, placed = recorded_frames(options.frames, rng)

    face = crop_faces(to_gray(frames[0]), [(0, 0, 48, 48)])
    one_face, one_face_p90 = median_ms(lambda: classify_faces(reader.model, face), options.calls)

    found = 0
    per_frame = []
    for _ in range(options.repeats):
        for frame in frames:
            started = time.perf_counter()
            faces, _ = reader.process_frame(frame)
            per_frame.append(time.perf_counter() - started)
            found += len(faces)
    fps = len(per_frame) / sum(per_frame)
    detect_ms, _ = median_ms(lambda: reader.detector.detect(to_gray(frames[1]), *reader.frame_search), 50, 3)
    two_faces = crop_faces(to_gray(frames[1]), [(0, 0, 48, 48), (100, 100, 48, 48)])
    classify_ms, _ = median_ms(lambda: classify_faces(reader.model, two_faces), 50, warmup=3)
    sample = [{"box": [200, 100, 180, 180], "label": "happy", "confidence": 0.9}]
    draw_ms, _ = median_ms(lambda: annotate(frames[0], sample), 50, warmup=3)
    load_after = os.getloadavg()

    command = (
        "python bench/bench_emojify.py"
        + "".join(
            f" --{name} {value}"
            for name, value in vars(options).items()
            if name not in ("write", "set") and value != parser.get_default(name)
        )
        + "".join(f" --set {override}" for override in options.set)
        + " --write"
    )
    lines = [
        "# emojify: speed of the live pipeline",
        "",
        f"Command: `{command}` (from the repository root)",
        "",
        f"- Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), Keras "
        f"{keras.__version__} on {keras.backend.backend()}, OpenCV {cv2.__version__}",
        f"- Load average while it ran: {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        "(other work on the machine slows every number below)",
        f"- Model: {model_name}{networks(model)}, {model.count_params():,} weights"
        + f" (served {serving_views(config)})",
        f"- Frames: {options.frames} built 640x480 frames with {placed} {origin} enlarged to 140-200 px, "
        f"{options.repeats} passes",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| classify one 48x48 face (`classify_faces`, median of {options.calls}) | {one_face:.1f} ms "
        f"(p90 {one_face_p90:.1f} ms) | ≤ 10 ms |",
        f"| whole webcam loop per 640x480 frame (detect + classify + draw) | **{fps:.1f} fps** "
        f"({1000 / fps:.1f} ms/frame) | ≥ 15 fps |",
        f"| of which: face detection ({reader.detector.name}, frame shrunk to "
        f"{reader.frame_search[0]} px wide) "
        f"| {detect_ms:.1f} ms | |",
        f"| of which: classifying the 2 faces of a two-face frame (one batch) | {classify_ms:.1f} ms | |",
        f"| of which: drawing one emoji and label | {draw_ms:.1f} ms | |",
        f"| faces found / faces placed | {found / options.repeats:.0f} / {placed} | |",
        "",
    ]
    report(lines, RESULTS, options.write)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
