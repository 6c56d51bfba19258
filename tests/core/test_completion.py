"""Shell completion, end to end: the real `migrate` executable installs its script for bash, zsh and fish
under $HOME, and answers completion requests the way each script asks for them. bash is really driven:
the script is sourced and its completion function called with COMP_WORDS, as bash does on <Tab>."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
MIGRATE = shutil.which("migrate", path=str(BIN))


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_MIGRATE", "_TYPER", "COMP_"))}
    return {**env, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra}


def _migrate(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    assert MIGRATE, f"no migrate executable in {BIN}"
    return subprocess.run([MIGRATE, *args], capture_output=True, text=True, env=_env(home, **extra), timeout=60)


@pytest.mark.parametrize("shell,path", [
    ("bash", ".bash_completions/migrate.sh"),
    ("zsh", ".zfunc/_migrate"),
    ("fish", ".config/fish/completions/migrate.fish"),
])
def test_install_completion_writes_the_shells_file(tmp_path, shell, path):
    result = _migrate(tmp_path, "--install-completion", shell)
    assert result.returncode == 0, result.stderr
    script = tmp_path / path
    assert f"{shell} completion installed in {script}" in result.stdout
    shown = _migrate(tmp_path, "--show-completion", shell)
    assert shown.returncode == 0 and shown.stdout.strip() == script.read_text().strip()
    assert "_MIGRATE_COMPLETE=complete_" + shell in script.read_text()
    if shell == "bash":
        assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
        # a new shell reading ~/.bashrc has the completion registered
        registered = subprocess.run(["bash", "-c", "source ~/.bashrc; complete -p migrate"], capture_output=True,
                                    text=True, env=_env(tmp_path), timeout=60)
        assert "-F _migrate_completion migrate" in registered.stdout, registered.stderr
    if shell == "zsh":
        assert script.read_text().startswith("#compdef migrate") and "compdef _migrate_completion migrate" in \
            script.read_text()
        assert "fpath+=~/.zfunc" in (tmp_path / ".zshrc").read_text()
    if shell == "fish":
        assert script.read_text().startswith("complete --command migrate ")


def test_an_unknown_shell_is_refused(tmp_path):
    result = _migrate(tmp_path, "--install-completion", "tcsh")
    assert result.returncode == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr
    assert not any(tmp_path.iterdir())


def test_bash_completes_commands_and_choices(tmp_path):
    script = _migrate(tmp_path, "--show-completion", "bash").stdout
    assert "complete -o default -F _migrate_completion migrate" in script
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=60)
    assert syntax.returncode == 0, syntax.stderr
    (tmp_path / "migrate.sh").write_text(script)
    # what bash does on <Tab>: COMP_WORDS/COMP_CWORD, then the registered function with the command's name
    driver = ('source ./migrate.sh; complete_at() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
              '_migrate_completion migrate; echo "${COMPREPLY[*]}"; }; '
              'complete_at migrate ""; complete_at migrate export --archived ""; complete_at migrate config ""')
    out = subprocess.run(["bash", "-c", driver], capture_output=True, text=True, cwd=tmp_path,
                         env=_env(tmp_path), timeout=60)
    assert out.returncode == 0, out.stderr
    commands, archived, config = out.stdout.splitlines()
    import typer
    from migrate_core.cli import app

    assert commands.split() == list(typer.main.get_command(app).commands)  # every command, in help order
    assert {"export", "load", "run", "verify", "inspect", "plugins", "config"} <= set(commands.split())
    assert archived.split() == ["exclude", "include", "only"]
    assert config.split() == ["show"]


def test_zsh_and_fish_requests_are_answered(tmp_path):
    # the variables each installed script sets (see the scripts above); zsh and fish are not on this machine
    zsh = _migrate(tmp_path, _MIGRATE_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="migrate --log-level ")
    assert zsh.returncode == 0, zsh.stderr
    assert zsh.stdout.startswith("_arguments") and all(f'"{level}"' in zsh.stdout
                                                       for level in ("debug", "info", "warning", "error"))
    fish = _migrate(tmp_path, _MIGRATE_COMPLETE="complete_fish", _TYPER_COMPLETE_FISH_ACTION="get-args",
                    _TYPER_COMPLETE_ARGS="migrate plugins ")
    assert fish.returncode == 0 and fish.stdout.split()[0] == "list", fish.stderr
