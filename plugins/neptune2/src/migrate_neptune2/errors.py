"""Errors the neptune2 source raises on purpose: each message is one line a user can act on."""

from __future__ import annotations

from typing import Any

from migrate_core.errors import MigrateError, UsageError


class Neptune2Error(MigrateError):
    """A Neptune 2.x server could not be read (after retries)."""


class AuthError(UsageError):
    """The API token is missing, malformed or rejected."""


class ProjectError(UsageError):
    """A project is unknown or cannot be read by the neptune 1.x client (legacy v1 project)."""


class ApiError(Neptune2Error):
    """A non-retryable (or retried-out) answer from the server for one operation."""

    def __init__(self, op: str, status: int, body: Any, detail: str = "") -> None:
        self.op = op
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        self.error_type = str(self.body.get("errorType") or "")
        message = self.body.get("message") or self.body.get("title") or detail or ""
        text = f"Neptune {op} answered HTTP {status}" + (f": {message}" if message else "")
        super().__init__(" ".join(str(text).split())[:500])


class AttributeFetchError(Neptune2Error):
    """One attribute of a run could not be read; the run is not marked complete."""


class RunGone(Neptune2Error):
    """The run was trashed or deleted while it was being exported."""
