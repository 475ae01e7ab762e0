"""Errors the control path raises; the API turns each into one precise HTTP answer."""

from __future__ import annotations


class ConfigError(Exception):
    """A config file is wrong. The message names the file, the field and what was expected,
    because the operator reads it instead of a traceback (the CLI exits with status 2)."""

    def __init__(self, source: str, field: str, expected: str, got: object = ...) -> None:
        self.source, self.field, self.expected = source, field, expected
        msg = f"{source}: field '{field}': expected {expected}"
        if got is not ...:
            msg += f", got {got!r}"
        super().__init__(msg)


class BackendError(Exception):
    """The backend failed to do what was asked (Hatchery answers these with 500)."""


class WorkspaceExists(BackendError):
    """A workspace for this user already exists."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached right now (e.g. the Kubernetes API is down): 503."""


class NameTaken(BackendError):
    """The user's workspace name (Hatchery's escaping of the user name) is held by another
    user whose name escapes the same way: 409, never the other user's workspace or volume."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the workspace name {name!r} belongs to another user: user names "
                         "that differ only in escaped characters cannot both have a "
                         "workspace here")


class NotIsolated(BackendError):
    """The local backend cannot keep users apart here and is not told they may share: 403."""


class Unsupported(Exception):
    """A Hatchery feature hatchway does not provide was asked for (a Nextflow or licensed
    option): the launch is refused with Hatchery's 500 and a sentence naming it."""
