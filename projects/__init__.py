"""The pipelines. Each folder is a plug-in that ``common.registry`` discovers by name."""
