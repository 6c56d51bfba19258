"""`migrate doctor --sink pluto` through the real CLI against the fake Pluto server."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from tests.fakes.pluto import FakePluto


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sink_rows(result):
    return {r["check"]: r for r in result.json()["checks"] if r["kind"] == "sink"}


def test_all_green(migrate, fake_pluto: FakePluto):
    assert migrate("run", "--source", "demo", "--sink", "pluto", "--set", "source.demo.runs=1",
                   "--set", "source.demo.points_per_series=10").code == 0
    result = migrate("doctor", "--sink", "pluto", "-p", "demo/project", "-p", "ws/new", "--json")
    assert result.code == 0, result.out
    rows = sink_rows(result)
    key = fake_pluto.api_key
    assert rows["credentials"]["detail"] == f"API key ****{key[-4:]} from env var PLUTO_API_KEY"
    assert rows["reachable"]["detail"].startswith(f"api/ingest/py {fake_pluto.url}: 127.0.0.1:")
    assert rows["auth"]["status"] == "ok" and "1 projects visible" in rows["auth"]["detail"]
    assert "demo-project exists (1 runs)" in rows["project"]["detail"]
    assert "ws-new is new: the first load creates it" in rows["project"]["detail"]
    assert key not in result.out + result.err


def test_wrong_key_fails_auth_with_the_fix(migrate, monkeypatch):
    monkeypatch.setenv("PLUTO_API_KEY", "mlpi_wrongwrongwrong1234")
    result = migrate("doctor", "--sink", "pluto", "--json")
    assert result.code == 1
    rows = sink_rows(result)
    assert rows["credentials"]["detail"] == "API key ****1234 from env var PLUTO_API_KEY"
    assert rows["auth"]["status"] == "fail" and "rejected the API key" in rows["auth"]["detail"]
    assert "Invalid API key" in rows["auth"]["detail"] and "PLUTO_API_KEY" in rows["auth"]["fix"]
    assert "wrongwrong" not in result.out + result.err


def test_server_down_fails_fast(migrate):
    url = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    result = migrate("doctor", "--sink", "pluto", "--set", f"sink.pluto.url_api={url}", "--json")
    assert time.monotonic() - start < 10
    assert result.code == 1
    rows = sink_rows(result)
    down = [r for r in result.json()["checks"] if r["check"] == "reachable" and not r["ok"]]
    assert len(down) == 1 and "refused the connection" in down[0]["detail"] and down[0]["fix"]
    assert "api " in down[0]["detail"] and "auth" not in rows  # no auth check against a dead server


def test_missing_key_names_the_variable(migrate, monkeypatch):
    monkeypatch.delenv("PLUTO_API_KEY")
    result = migrate("doctor", "--sink", "pluto")
    assert result.code == 1
    text = " ".join(result.out.split())
    assert "✗ sink pluto credentials no Pluto API key: $PLUTO_API_KEY is not set" in text
    assert "fix: export PLUTO_API_KEY=<your key>" in text and "pluto login" in text


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS pluto-ml keeps the key in the system keyring")
def test_key_from_pluto_login_is_found(migrate, monkeypatch, tmp_path, fake_pluto: FakePluto):
    from keyrings.alt.file import PlaintextKeyring

    monkeypatch.delenv("PLUTO_API_KEY")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)  # the keyring file goes under the test's HOME
    assert str(tmp_path) in PlaintextKeyring().file_path
    PlaintextKeyring().set_password("pluto", "pluto", fake_pluto.api_key)
    result = migrate("doctor", "--sink", "pluto", "--json")
    assert result.code == 0, result.out
    assert "from the key `pluto login` stored (keyring)" in sink_rows(result)["credentials"]["detail"]
