"""The pipelines. Each folder is a plug-in that ``common.core.registry`` discovers by name."""
