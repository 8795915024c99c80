"""Validation accuracy of a saved emojify model, single pass and mirror-averaged.

How ``model.mirror_average`` was chosen, and how a new model is picked over an older one: on the
validation split carved from FER2013's train split (same seed as training), never on test.

Run: .venv/bin/python -m bench.emojify_validation [--model pretrained] [--data FOLDER]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from common import registry, workflow  # noqa: E402
from common.errors import UserError  # noqa: E402
from projects.emojify.model import serving_model  # noqa: E402
from tests.conftest import SHARED_DATA  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="pretrained", help="'pretrained', a run folder or a .keras file")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "fer2013", help="FER2013 with train/")
    options = parser.parse_args()
    project = registry.get_project("emojify")
    try:
        model, config, model_file = workflow.load_saved(
            project, options.model, [f"data.path={options.data}"], need_data=True
        )
    except UserError as error:
        raise SystemExit(f"error: {error} (--data names the FER2013 folder with train/)") from None
    x, y = project.module.load_data(config, need_training=True).validation
    for mirror in (False, True):
        served = serving_model(model, config.with_overrides([f"model.mirror_average={str(mirror).lower()}"]))
        accuracy = float(np.mean(served.predict(x, batch_size=256, verbose=0).argmax(axis=1) == y))
        name = "mirror-averaged" if mirror else "single pass"
        print(f"{name:>16}: {accuracy:.2%} validation accuracy on {len(y):,} faces ({model_file})")


if __name__ == "__main__":
    main()
