"""Training: ``steps.py`` drives Keras' five steps (create, compile, fit, save, predict) in file
order, and the machinery that keeps a run safe sits beside it, to be read only when needed:
``checkpoints.py`` (per-epoch commits, resume, how a failed run is left), ``devices.py`` and
``parallel.py`` (precision, device placement, processes), ``distill.py`` (a teacher's soft
targets) and ``tracking.py`` (MLflow).

May import ``common.core``, ``common.kit``, ``common.keras_setup`` and ``common.serving.loading``
(a teacher or a continued run is loaded as any saved model is); serving never imports training.
"""
