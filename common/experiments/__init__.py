"""Experiments over many runs: ``runs_table.py`` (the ``runs`` table and ``compare``, read from
the files runs leave, without Keras), ``tuning.py`` (KerasTuner's search, trials as ordinary run
folders) and ``ensemble.py`` (several runs' models averaged into one).

May import every other layer of ``common``.
"""
