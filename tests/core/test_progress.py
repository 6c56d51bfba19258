"""Progress on a terminal: the real CLI with a terminal for stderr (in-process, or a pseudo-terminal for
`export --processes`), read back from the bars rich rendered."""

from __future__ import annotations

import io
import json
import os
import re
import sys

import pytest
from migrate_core import cli
from migrate_core.progress import human

from tests.core.test_cli import SMALL

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_terminal(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a (fake) terminal: rich draws its bars, logs render for a console."""
    capsys.readouterr()
    term, saved = Terminal(), sys.stderr
    monkeypatch.setenv("COLUMNS", "160")
    sys.stderr = term
    try:
        code = cli.main(list(args))
    finally:
        sys.stderr = saved
    return code, capsys.readouterr().out, ANSI.sub("", term.getvalue())


def bar(err: str, name: str) -> str:
    """The last drawing of one bar, e.g. `export rows`."""
    lines = [line for line in re.split(r"[\r\n]", err) if line.startswith(name)]
    assert lines, f"no {name!r} bar in:\n{err[-3000:]}"
    return lines[-1]


def summary_rows(out: str, stage: str) -> int:
    return int(re.search(rf"^{stage}: .* · ([\d,]+) rows", out, re.M).group(1).replace(",", ""))


@pytest.fixture
def term(migrate, monkeypatch, capsys):
    """`term("run", ...)`: the CLI in tmp_path with the test plugins, stderr on a terminal."""
    return lambda *args: on_terminal(monkeypatch, capsys, *args)


def test_run_counts_each_stages_rows_once_and_the_runs_reach_their_total(term):
    code, out, err = term("run", "--source", "demo", "--sink", "memory", *SMALL)
    assert code == 0, err
    exported, loaded = (summary_rows(out, stage) for stage in ("export", "load"))
    assert "3/3 runs" in bar(err, "run runs") and "100%" in bar(err, "run runs")
    # export and load each on their own line, each with its own stage's rows (never their sum)
    assert f"{human(exported)}/~{human(exported)} rows" in bar(err, "export rows")
    assert f"{human(loaded)}/{human(loaded)} rows" in bar(err, "load rows")  # the manifests' exact total
    assert "rows/s" in bar(err, "load rows")
    assert "bytes" in bar(err, "export bytes") and "kB" in bar(err, "export bytes")
    assert "run_done" not in err  # a line per run is debug while bars show every run


def test_load_and_verify_bars_reach_their_totals(term, migrate):
    assert migrate("export", "--source", "demo", *SMALL, "--set", "source.demo.runs=5").code == 0
    code, out, err = term("load", "--sink", "memory")
    assert code == 0, err
    rows = summary_rows(out, "load")
    assert "5/5 runs" in bar(err, "load runs")
    assert f"{human(rows)}/{human(rows)} rows" in bar(err, "load rows")
    code, out, err = term("verify", "--sink", "memory")
    assert code == 0 and "5/5 runs" in bar(err, "verify runs"), err
    code, out, err = term("load", "--sink", "memory")  # all skipped: still every run finishes on the bar
    assert "5 skipped" in out and "5/5 runs" in bar(err, "load runs")


def test_done_lines_are_debug_on_a_terminal_and_info_in_logs(term, migrate):
    code, _, err = term("--log-level", "debug", "export", "--source", "demo", *SMALL)
    assert code == 0 and re.search(r"\[debug\s*\] run_done", err), err[-2000:]
    logged = migrate("export", "--source", "demo", *SMALL, "--force")  # JSON lines on a pipe
    done = [json.loads(line) for line in logged.err.splitlines() if '"run_done"' in line]
    assert len(done) == 3 and {d["level"] for d in done} == {"info"}


def test_warnings_stay_visible_above_the_bars(term, memory_sink):
    memory_sink.fail["DEMO-2"] = RuntimeError("server said no")
    code, out, err = term("run", "--source", "demo", "--sink", "memory", *SMALL)
    assert code == 1
    assert "run_failed" in err and "server said no" in err
    assert err.rindex("run_failed") < err.rindex("run runs")  # printed above the bars, which stay drawn
    assert "3/3 runs" in bar(err, "run runs")


def test_quiet_shows_warnings_and_the_summary_only(term, memory_sink, monkeypatch):
    memory_sink.fail["DEMO-2"] = RuntimeError("server said no")
    for env, args in (("", ("--quiet", "run")), ("", ("run", "-q")), ("1", ("run",))):
        monkeypatch.setenv("MIGRATE_QUIET", env)
        code, out, err = term(*args, "--source", "demo", "--sink", "memory", *SMALL, "--force")
        assert code == 1 and "load: 2 ok, 1 failed" in out and "time:" in out
        assert "runs" not in err and "rows/s" not in err  # no bars
        assert "run_failed" in err and "server said no" in err  # warnings still say what went wrong
        assert "info" not in err and "command_ready" not in err, err


def test_no_progress_keeps_the_logs_and_draws_no_bars(term, monkeypatch):
    for args in (("--no-progress", "export"), ("export", "--no-progress")):
        code, out, err = term(*args, "--source", "demo", *SMALL, "--force")
        assert code == 0 and "export: 3 ok" in out
        assert "export runs" not in err and "rows/s" not in err
        assert err.count("run_done") == 3  # no bars show the runs, so the log does, at info
    monkeypatch.setenv("MIGRATE_NO_PROGRESS", "1")
    code, out, err = term("export", "--source", "demo", *SMALL, "--force")
    assert "export runs" not in err and err.count("run_done") == 3


@pytest.mark.slow
def test_export_processes_shows_the_real_total_on_a_pseudo_terminal(tmp_path):
    import pty
    import select
    import subprocess

    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATE")}
    env.update(COLUMNS="160", LINES="40", TERM="xterm")
    argv = [sys.executable, "-m", "migrate_core", "export", "--source", "demo", *SMALL, "--set", "source.demo.runs=12",
            "--processes", "2"]
    child = subprocess.Popen(argv, cwd=tmp_path, stdin=follower, stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    drawn = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        elif child.poll() is not None:
            break
    out = child.stdout.read().decode()
    assert child.wait(timeout=60) == 0, out
    os.close(leader)
    err = ANSI.sub("", drawn.decode(errors="replace"))
    assert "export: 12 ok" in out
    assert "12/12 runs" in bar(err, "export runs") and "/?" not in bar(err, "export runs")
    rows = summary_rows(out, "export")
    assert f"{human(rows)}/~{human(rows)} rows" in bar(err, "export rows")  # the children's estimates, summed
    assert "run_done" not in err
