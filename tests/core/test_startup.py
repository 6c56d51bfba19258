"""`migrate --help` and `--version` start fast because the CLI imports nothing heavy until a command needs
it (bench/startup.py measures the time; tests never assert wall time, only what gets imported)."""

import json
import subprocess
import sys
import textwrap

HEAVY = ("pyarrow", "pydantic", "structlog", "tomli_w", "migrate_core.config", "migrate_core.api",
         "migrate_core.plugins")


def test_help_and_version_import_nothing_heavy():
    # modules new since the interpreter started (a site hook, such as pluto-ml's .pth, may import some first)
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        heavy = {HEAVY!r}
        at_start = set(sys.modules)
        seen = {{}}
        import migrate_core.cli as cli
        seen["import"] = sorted(m for m in set(sys.modules) - at_start if m.split(".")[0] in heavy or m in heavy)
        for args in (["--help"], ["--version"], ["export", "--help"], ["config", "show", "--help"]):
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli.main(args) == 0
            seen[" ".join(args)] = sorted(m for m in set(sys.modules) - at_start
                                          if m.split(".")[0] in heavy or m in heavy)
        print(json.dumps(seen))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"COLUMNS": "80", "PATH": ""}).stdout
    seen = json.loads(out)
    assert seen["import"] == [] and seen["--help"] == [] and seen["--version"] == []
    # a sub-command's --help comes after the root's options were parsed, which typer (0.29) coerces through
    # pydantic: that one is typer's; logging (structlog), config, plugins and pyarrow still wait for a command
    for args in ("export --help", "config show --help"):
        assert [m for m in seen[args] if m.split(".")[0] != "pydantic"] == [], args
