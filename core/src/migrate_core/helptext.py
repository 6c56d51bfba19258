"""How `migrate --help` is laid out: the option panels, the examples under each command, and value names.

One constant per panel, so that an option joins a group by naming it (`rich_help_panel=PANEL_OUTPUT`) and a
new group is one more constant. Every value-taking option gets an upper-case metavar (`PATH`, `N`, `REGEX`)
or its choices; flags get none (typer would print `<bool>`). The help must fit 80 columns:
tests/core/test_help.py renders every command at COLUMNS=80.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from typer.core import TyperCommand, TyperGroup

PANEL_PLUGINS = "Plugins and config"
PANEL_SELECTION = "Selection"
PANEL_SOURCE = "Source options"
PANEL_STORAGE = "Storage options (local_fs)"
PANEL_EXECUTION = "Execution"
PANEL_OUTPUT = "Output"
PANEL_SHELL = "Shell completion"

BEFORE_COMMAND = "migrate.before_command"  # ctx.meta key: what the root callback leaves for the command


def choices(enum: type[StrEnum]) -> str:
    """The metavar of a choice option: `exclude|include|only`."""
    return "|".join(member.value for member in enum)


def examples(*lines: str) -> str:
    """A command's epilog: `Examples:` and one command line each (typer keeps single line breaks)."""
    return "Examples:\n" + "\n".join(f"  {line}" for line in lines)


class _NoFlagMetavar:
    """Flags take no value, so they show no type (typer would print `<bool>` for them, --help included)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_NoFlagMetavar, TyperCommand):
    """A `migrate` command (use as `@app.command(cls=Command)`).

    Before its callback runs, the root's `ctx.meta[BEFORE_COMMAND]` does (logging set up): a `--help` exits
    while parsing, before that, and so never imports what logging needs (structlog, pydantic)."""

    def invoke(self, ctx: Any) -> Any:
        before = ctx.meta.pop(BEFORE_COMMAND, None)
        if before is not None:
            before()
        return super().invoke(ctx)


class Group(_NoFlagMetavar, TyperGroup):
    """A `migrate` command group (use as `typer.Typer(cls=Group)`)."""
