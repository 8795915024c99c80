"""Handwritten digits: a CNN on MNIST, predicting drawings and photos of digits.

Its functions live in the conventional modules (data.py, model.py, evaluate.py, predict.py,
demo.py, settings.py), where ``common.registry`` finds and imports them only when needed.
"""
