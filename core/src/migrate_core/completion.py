"""Shell completion: `migrate --install-completion bash|zsh|fish` and `migrate --show-completion SHELL`.

typer writes the scripts and answers the shell's requests (`_MIGRATE_COMPLETE=complete_bash COMP_WORDS=...
migrate`). The shell is named, as in `uv generate-shell-completion bash` or `gh completion -s zsh`, rather
than guessed: typer's own `add_completion` options detect the shell from the parent process and ignore a
shell given after the flag, which installs the wrong file whenever migrate is started from a script.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Any

import typer


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def complete_var(prog_name: str) -> str:
    """The variable the completion scripts set when they ask for completions: `_MIGRATE_COMPLETE`."""
    return "_{}_COMPLETE".format(prog_name.replace("-", "_").upper())


def install(ctx: Any, _param: Any, value: Shell | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from typer.completion import install as typer_install

    prog_name = ctx.find_root().info_name
    shell, path = typer_install(shell=value.value, prog_name=prog_name, complete_var=complete_var(prog_name))
    sys.stdout.write(f"{shell} completion installed in {path}; it works in shells started from now on\n")
    raise typer.Exit()


def show(ctx: Any, _param: Any, value: Shell | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from typer.completion import get_completion_script

    prog_name = ctx.find_root().info_name
    sys.stdout.write(get_completion_script(prog_name=prog_name, complete_var=complete_var(prog_name),
                                           shell=value.value) + "\n")
    raise typer.Exit()


def prepare(prog_name: str) -> None:
    """When this process answers a completion request, answer it in typer's formats (the ones its scripts
    read); typer registers them only for its own `add_completion` options."""
    if os.environ.get(complete_var(prog_name)):
        from typer.completion import completion_init

        completion_init()
