"""The shared spine of the template: config, registry, run folders and the Keras workflow.

Every project in ``projects/`` plugs into it by declaring ``PROJECT = Project(...)`` in its
``__init__.py``; see ``common/project.py`` for the small set of functions a project supplies.
"""
