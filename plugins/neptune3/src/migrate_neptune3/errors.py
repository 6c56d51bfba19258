"""Errors the neptune3 source raises on purpose: each message is one line a user can act on."""

from __future__ import annotations

from migrate_core.errors import MigrateError, UsageError


class Neptune3Error(MigrateError):
    """A Neptune 3.x server could not be read (after neptune-query's retries)."""


class AuthError(UsageError):
    """The API token is missing, malformed, rejected or of the wrong Neptune version."""


class ProjectError(UsageError):
    """A project is unknown or not readable with this token."""


class AttributeFetchError(Neptune3Error):
    """One attribute of a run could not be read; the run is not marked complete."""


class RunGone(Neptune3Error):
    """The run was deleted (or trashed) while it was being exported."""
