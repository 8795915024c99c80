"""Tumour: benign or malignant from 30 measurements of a cell nucleus, with a focal loss.

A tabular project as keras-io writes one: a loss that is a Python function, metric objects, class
weights and a callback of its own, each reaching Keras through the project's hooks.
"""

from common.core.project import Headline, Project

PROJECT = Project(
    headline=Headline("test_accuracy", baseline="baseline_accuracy"),
    load_data="tumour:load_data",
    build_model="tumour:build_model",
    evaluate="tumour:evaluate",
    predict="tumour:predict",
    compile_options="tumour:compile_options",
    callbacks="tumour:callbacks",
)
