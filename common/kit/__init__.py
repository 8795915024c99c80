"""The kit a project imports: what its ``load_data``, ``evaluate``, ``predict`` and ``demo`` use.

``splits.py`` holds ``Splits`` (what ``load_data`` returns) and ``split_arrays``; ``batches.py``
and ``streaming.py`` feed training in a seeded order or from files; ``images.py`` reads pictures
with one-line errors; ``plots.py`` draws learning curves and grids; ``classification.py`` scores a
classifier beside its majority-class baseline; ``tk_window.py`` opens a demo's window.

May import ``common.core``, ``common.keras_setup`` and third-party libraries; never training,
serving or experiments, so a project's code stands on nothing that drives it.
"""
