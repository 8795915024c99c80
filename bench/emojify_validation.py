"""Validation accuracy of a saved emojify model, single pass, mirror-averaged and (for a model
trained on crops) averaged over its centre and corner crops, or reading larger centre squares.

How ``model.mirror_average`` was chosen, and how a new model is picked over an older one: on the
validation split carved from FER2013's train split (same seed as training), never on test.

Run: .venv/bin/python -m bench.emojify_validation [--model pretrained] [--data FOLDER] [--write]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench import RESULTS_DIR, add_write_argument, run, shown  # noqa: E402
from common.core import registry  # noqa: E402
from common.core.errors import UserError  # noqa: E402
from common.serving import loading
from projects.emojify.model import serving_model  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402

RESULTS = RESULTS_DIR / "emojify_validation.md"
HOW_TO_GET_FER2013 = (
    "download Kaggle's 'msambare/fer2013' (train/<emotion>/ folders) or fer2013.csv and pass --data "
    "with the folder that holds train/, or the CSV"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="pretrained", help="'pretrained', a run folder or a .keras file")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "fer2013", help="FER2013 with train/")
    add_write_argument(parser, RESULTS)
    options = parser.parse_args(argv)
    if not options.data.exists():
        raise UserError(f"no FER2013 at {options.data}; {HOW_TO_GET_FER2013}")
    project = registry.get_project("emojify")
    model, config, model_file = loading.load_saved(
        project, options.model, [f"data.path={options.data}"], need_data=True
    )
    x, y = project.functions.load_data(config, need_training=True).validation
    lines = []
    for crops, size, mirror in views_to_try(config):
        served = serving_model(
            model,
            config.with_overrides(
                [
                    f"model.mirror_average={str(mirror).lower()}",
                    f"model.test_crops={crops}",
                    f"model.test_size={size}",
                ]
            ),
        )
        accuracy = float(np.mean(served.predict(x, batch_size=256, verbose=0).argmax(axis=1) == y))
        name = "mirror-averaged" if mirror else "single pass"
        if crops > 1:
            name = f"{crops * (2 if mirror else 1)} crops averaged"
        if size:
            name += f", {size}x{size}"
        where = shown(Path(model_file).resolve())
        lines.append(f"{name:>26}: {accuracy:.2%} validation accuracy on {len(y):,} faces ({where})")
    print("\n".join(lines))
    if options.write:
        RESULTS.write_text(
            "# emojify: validation accuracy of the shipped model\n\n"
            f"Command: `.venv/bin/python -m bench.emojify_validation --write` ({time.strftime('%Y-%m-%d')}, "
            f"FER2013 from {options.data})\n\n```\n" + "\n".join(lines) + "\n```\n"
        )
        print(f"written to {RESULTS}")
    return 0


def views_to_try(config) -> list[tuple[int, int, bool]]:
    """``(test_crops, test_size, mirror_average)`` settings to compare: one pass and mirror-averaged;
    for a model trained on crops also its centre and corner crops, and with global pooling its
    network on centre squares from the crop's size up to the whole face (``test_size``)."""
    crop = config.augment.crop
    if not crop:
        return [(1, 0, False), (1, 0, True)]
    sizes = list(range(crop, 49, 2)) if config.model.global_pooling else [crop]
    if sizes[-1] != 48 and config.model.global_pooling:
        sizes.append(48)
    return [(1, size, mirror) for size in sizes for mirror in (False, True)] + [
        (5, crop, mirror) for mirror in (False, True)
    ]


if __name__ == "__main__":
    sys.exit(run(main))
