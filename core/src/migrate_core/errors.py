"""Exceptions with a meaning for the exit code and the one-line message the user sees."""

from __future__ import annotations


class MigrateError(Exception):
    """Base of everything we raise on purpose; the message is shown as one line."""

    exit_code = 1


class UsageError(MigrateError):
    """A bad command line, config file or plugin choice (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config value or key is wrong; the message names its dotted path and, when known, the line."""


class PluginError(UsageError):
    """A plugin is unknown, ambiguous, failed to import or to start."""


class DataError(MigrateError):
    """Stored data is unreadable or malformed (a truncated part, a wrong schema, ...)."""


class UnsafePathError(DataError):
    """A file path in the data points outside the files root; the file is never read."""


class Cancelled(MigrateError):  # noqa: N818 - it is a state, not a failure
    """The user interrupted; work stops at the next batch boundary and state stays resumable."""

    exit_code = 130
