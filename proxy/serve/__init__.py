"""Serving: the ``hatchway`` command, the app's assembly, listeners, drain, health."""
