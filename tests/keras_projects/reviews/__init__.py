"""Reviews: positive or negative from a sentence, with a TextVectorization layer in the model.

Texts go in as they are (a NumPy array of Python strings, dtype object): the vocabulary is part
of the saved model, so ``predict`` and ``serve`` take raw text.
"""

from common.core.project import Headline, Project

PROJECT = Project(
    headline=Headline("test_accuracy", baseline="baseline_accuracy"),
    load_data="text:load_data",
    build_model="text:build_model",
    evaluate="text:evaluate",
    predict="text:predict",
    callbacks="text:callbacks",
    web_api={"upload": ".txt", "upload_help": "a text file, one review a line"},
)
