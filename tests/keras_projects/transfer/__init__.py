"""Transfer: a pretrained base, frozen, under a new head; then the base fine-tuned (phase 2).

The keras-io transfer-learning recipe in two runs: ``train transfer`` trains the head with the
base frozen (``model.fine_tune = false``), then ``train transfer --continue-from RUN --config
projects/transfer/phase2.toml`` builds the model with the base trainable and loads the first
run's weights into it, at a learning rate 10x lower.
"""

from common.core.project import Headline, Project

PROJECT = Project(
    headline=Headline("test_accuracy", baseline="baseline_accuracy"),
    load_data="model:load_data",
    build_model="model:build_model",
    evaluate="model:evaluate",
    predict="model:predict",
    callbacks="model:callbacks",
)
