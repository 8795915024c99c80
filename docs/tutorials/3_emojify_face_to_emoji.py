# %% [markdown]
# # How a face becomes an emoji
#
# `python -m common predict emojify photo.jpg --out annotated.png` finds every face in a photo,
# reads its emotion and draws the matching emoji beside it. This tutorial takes that apart into
# its four steps, with the project's own functions:
#
# 1. a **detector** finds the faces (`projects/emojify/faces.py`);
# 2. each face is **cropped** to 48x48 grayscale pixels, framed as FER2013 frames its faces;
# 3. a **CNN** trained on FER2013 gives seven emotion probabilities, averaged with those of the
#    face's **mirror image** (`projects/emojify/model.py`, `serving_model`);
# 4. the likeliest emotion picks an **emoji**, drawn by the project itself
#    (`projects/emojify/emoji.py`) beside the face (`projects/emojify/predict.py`).
#
# Everything here runs offline: the photo is the portrait of Grace Hopper that ships with
# matplotlib, the model is the one shipped in `models/pretrained/emojify/`, and the last part
# uses the synthetic faces the project trains on when FER2013 is absent. Nothing is trained, so
# `TUTORIAL_SIZE` changes nothing here.

# %%
# Keras without the start-up lines TensorFlow prints on some CPUs: the first `import keras`,
# wherever it happens, is filtered (the command line and the tests do the same).
from common.keras_setup import quiet_keras_import

quiet_keras_import()

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from common.core import registry
from common.serving.loading import load_saved
from projects.emojify.classes import CLASS_NAMES
from projects.emojify.emoji import emoji_image
from projects.emojify.faces import crop_faces, make_detector, to_gray
from projects.emojify.model import serving_model
from projects.emojify.predict import FaceReader, annotate, classify_faces
from projects.emojify.synthetic import draw_face

# The template draws its own plots into files; in a notebook, figures are drawn in the page.
# %matplotlib inline

# %% [markdown]
# ## The model and the photo
#
# `load_saved` loads a project's model (`"pretrained"`: the shipped one) with the config it was
# trained with: the `[faces]` settings of the detector, and how the model is served.

# %%
project = registry.get_project("emojify")
model, config, model_file = load_saved(project, "pretrained", announce=False)
print(model.name, "-", model.count_params(), "weights; trained on", config.data.path or "FER2013")

photo = np.asarray(
    Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
)
print("photo:", photo.shape)

# %% [markdown]
# ## Step 1: find the faces
#
# The detector is RetinaFace (a small ONNX network run by onnxruntime) or, when its package is
# missing, OpenCV's Haar cascade. It works on the grayscale picture and returns boxes
# `(x, y, width, height)`, largest first, already squared to the framing of FER2013's crops.

# %%
detector = make_detector(config.faces)
gray = to_gray(photo)
boxes = detector.detect(gray, config.faces.photo_width, config.faces.photo_min_face)
print(detector.name, "found", len(boxes), "face(s):", boxes)

figure, axis = plt.subplots(figsize=(4, 5))
axis.imshow(photo)
for x, y, w, h in boxes:
    axis.add_patch(plt.Rectangle((x, y), w, h, fill=False, edgecolor="lime", linewidth=2))
axis.axis("off")
plt.show()

# %% [markdown]
# ## Step 2: crop to 48x48
#
# FER2013's faces are 48x48 grayscale pixels, so each box is cut out and shrunk to that size.
# Beside the crop, its mirror image: a face is nearly symmetric, so the mirror is another view of
# the same expression.

# %%
crops = crop_faces(gray, boxes)
mirrored = crops[:, :, ::-1]

figure, axes = plt.subplots(1, 2, figsize=(4, 2.2))
for axis, image, title in zip(axes, (crops[0], mirrored[0]), ("crop", "mirror")):
    axis.imshow(image, cmap="gray", vmin=0, vmax=255)
    axis.set_title(f"{title} {image.shape[1]}x{image.shape[0]}")
    axis.axis("off")
plt.show()

# %% [markdown]
# ## Step 3: the CNN, and the mirror average
#
# The network reads raw pixels (it scales them itself) and answers seven probabilities.
# `serving_model` wraps it for prediction: with `model.mirror_average = true` (the shipped
# config) it puts each face and its mirror through the network in one batch and averages the
# two answers, test-time augmentation that added 1.2 points of validation accuracy. Below, the
# network on each view alone, and the wrapper: its answer is their average.

# %%
one_view = serving_model(model, config.with_overrides(["model.mirror_average=false"]))
averaged = serving_model(model, config)
face = classify_faces(one_view, crops)[0]
mirror = classify_faces(one_view, mirrored)[0]
served = classify_faces(averaged, crops)[0]
print(
    "the wrapper's answer is the average of both views:", np.allclose(served, (face + mirror) / 2, atol=1e-5)
)

positions = np.arange(len(CLASS_NAMES))
figure, axis = plt.subplots(figsize=(8, 3))
for offset, values, label in (
    (-0.27, face, "face"),
    (0, mirror, "mirror"),
    (0.27, served, "average (served)"),
):
    axis.bar(positions + offset, values, width=0.27, label=label)
axis.set_xticks(positions, CLASS_NAMES)
axis.set_ylabel("probability")
axis.legend()
plt.show()
print("emotion:", CLASS_NAMES[int(served.argmax())], f"({served.max():.0%})")

# %% [markdown]
# ## Step 4: the emoji
#
# The seven emoji are drawn by the project with Pillow: nothing to download, no licence to check.

# %%
figure, axes = plt.subplots(1, len(CLASS_NAMES), figsize=(10, 1.8))
for axis, name in zip(axes, CLASS_NAMES):
    axis.imshow(emoji_image(name, 96))
    axis.set_title(name)
    axis.axis("off")
plt.show()

# %% [markdown]
# `FaceReader` does steps 1 to 3 for every face of a picture, as `predict`, the webcam demo and
# the web app do, and `annotate` draws each face's box, label and emoji, placed clear of the
# other faces.

# %%
reader = FaceReader.from_config(model, config)
faces, _ = reader.read(photo)
print(faces)
figure, axis = plt.subplots(figsize=(5, 6))
axis.imshow(annotate(photo, faces))
axis.axis("off")
plt.show()

# %% [markdown]
# ## A face that is already cropped
#
# A small square picture, such as a 48x48 FER2013 face, is taken to be a face already cropped:
# the reader skips the detector and classifies it whole. Without FER2013, `make train-emojify`
# trains on faces like these, drawn by `projects/emojify/synthetic.py` (an oval, eyes, brows and
# a mouth shaped by the emotion). Here the FER2013 model reads one of each: drawings are not
# photos, and its answers show it; a model trained on them would read them well and real faces
# badly, which is why such a model is labelled "NOT FER2013" wherever it is shown.

# %%
rng = np.random.default_rng(0)
drawn = [draw_face(name, rng) for name in CLASS_NAMES]
answers = [reader.read(image)[0][0] for image in drawn]

figure, axes = plt.subplots(2, len(CLASS_NAMES), figsize=(10, 3.4))
for column, (name, image, answer) in enumerate(zip(CLASS_NAMES, drawn, answers)):
    axes[0, column].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[0, column].set_title(f"drawn {name}", fontsize=9)
    axes[1, column].imshow(emoji_image(answer["label"], 96))
    axes[1, column].set_title(f"{answer['label']} {answer['confidence']:.0%}", fontsize=9)
for axis in axes.flat:
    axis.axis("off")
plt.show()
print(sum(answer["label"] == name for name, answer in zip(CLASS_NAMES, answers)), "of 7 read as drawn")
