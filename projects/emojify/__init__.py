"""Emotions to emoji: a CNN on FER2013 faces, reading faces in photos and from a webcam.

Its functions live in the conventional modules (data.py, model.py, evaluate.py, predict.py,
demo.py, settings.py), where ``common.registry`` finds and imports them only when needed.
"""
