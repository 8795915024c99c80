"""Serving what training saved: ``loading.py`` loads a run's model safely, evaluates it and asks
it (``evaluate``, ``predict``); ``app.py`` is the web pages and HTTP API of ``serve``;
``batching.py`` gathers concurrent requests into one batch; ``export.py`` writes SavedModel,
ONNX and LiteRT files, each checked in its own runtime. ``web/`` holds the pages' files.

May import ``common.core``, ``common.kit`` and ``common.keras_setup``; never ``common.training``:
answering a request does not load the training machinery.
"""
