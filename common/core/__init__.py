"""The core: what a project declares and what a run is, without Keras.

``project.py`` is the contract (``PROJECT = Project(...)`` in a project's ``__init__.py``),
``config.py`` the TOML settings with their checks and sources, ``defaults.toml`` the keys every
project shares (seed, train, distill, tune) with their comments, ``registry.py`` finds the projects,
``runs.py`` owns run folders (their state, lock and ``latest``), ``files.py`` writes atomically,
``paths.py`` knows the repository root, ``commands.py`` words a command to run next as the user
can type it, and ``errors.py`` holds the one-line ``UserError``.

May import only the standard library, ``tomli_w`` and each other: nothing here starts Keras or NumPy, so
``list``, ``runs`` and a config error answer at once.
"""
