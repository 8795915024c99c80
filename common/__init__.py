"""The shared spine of the template: config, registry, run folders and the Keras workflow.

Every project in ``projects/`` plugs into it; see ``common/registry.py`` for the small set of
functions a project exposes.
"""
