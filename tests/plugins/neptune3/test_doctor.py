"""`migrate doctor --source neptune3` through the real CLI against the fake Neptune 3.x backend."""

from __future__ import annotations

import socket
import time

from tests.fakes.neptune3.server import FakeNeptune3

from .conftest import FAST_SET, PROJECT


def source_rows(result):
    return {r["check"]: r for r in result.json()["checks"] if r["kind"] == "source"}


def test_all_green_then_a_project_that_does_not_exist(migrate, fake_neptune3: FakeNeptune3, declared):
    result = migrate("doctor", "--source", "neptune3", "-p", PROJECT, *FAST_SET, "--json")
    assert result.code == 0, result.out
    rows = source_rows(result)
    token = fake_neptune3.api_token
    assert rows["credentials"]["detail"] == \
        f"API token ****{token[-4:]} from env var $NEPTUNE_API_TOKEN, for {fake_neptune3.base_url}"
    assert rows["reachable"]["ok"] and rows["auth"]["ok"]
    assert rows["project"]["detail"] == f"{PROJECT} exists and is readable"
    # the archived run is excluded; neptune3 lists runs without counting their points
    assert rows["export plan"]["detail"] == "3 of 3 runs to export; the source does not estimate their size"
    assert "no export estimate" in [r for r in result.json()["checks"] if r["check"] == "free disk"][0]["detail"]
    assert token not in result.out + result.err

    missing = migrate("doctor", "--source", "neptune3", "-p", "fake-workspace/nope", *FAST_SET, "--json")
    assert missing.code == 1
    assert source_rows(missing)["project"]["status"] == "fail"
    assert "fake-workspace/nope" in source_rows(missing)["project"]["detail"]


def test_wrong_token_fails_auth(migrate, monkeypatch, fake_neptune3: FakeNeptune3):
    monkeypatch.setenv("NEPTUNE_API_TOKEN", fake_neptune3.make_api_token("wrong-key", valid=False))
    result = migrate("doctor", "--source", "neptune3", "-p", PROJECT, *FAST_SET, "--json")
    assert result.code == 1
    auth = source_rows(result)["auth"]
    assert auth["status"] == "fail" and "$NEPTUNE_API_TOKEN" in auth["detail"], auth
    assert auth["fix"].startswith("use a valid Neptune 3.x API token")


def test_server_down_is_fast(migrate, monkeypatch, fake_neptune3: FakeNeptune3):
    from tests.fakes.common import make_api_token

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("NEPTUNE_API_TOKEN", make_api_token(f"http://127.0.0.1:{port}", "k"))
    start = time.monotonic()
    result = migrate("doctor", "--source", "neptune3", "-p", PROJECT, "--json")
    assert time.monotonic() - start < 10
    rows = source_rows(result)
    assert result.code == 1 and rows["reachable"]["detail"] == f"127.0.0.1:{port} refused the connection"


def test_missing_token_names_the_variable(migrate, monkeypatch):
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    result = migrate("doctor", "--source", "neptune3", "--set", "source.neptune3.api_token_env=MY_NEPTUNE_TOKEN")
    assert result.code == 1
    text = " ".join(result.out.split())
    assert "✗ source neptune3 credentials no Neptune API token: $MY_NEPTUNE_TOKEN is not set" in text
    assert "fix: export MY_NEPTUNE_TOKEN=<token>" in text
