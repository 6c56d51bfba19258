"""What the Pluto sink raises: one-line messages that name the server's answer, never a secret."""

from __future__ import annotations

from migrate_core.errors import MigrateError


class PlutoError(MigrateError):
    """A request to Pluto failed for good (after retries, or at once for a non-transient 4xx)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
