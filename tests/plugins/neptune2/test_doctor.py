"""`migrate doctor --source neptune2` through the real CLI against the fake Neptune 2.x server."""

from __future__ import annotations

import socket
import time

from tests.fakes.common import make_api_token
from tests.fakes.neptune2 import FakeNeptune2Server

from .conftest import FAST_SET


def source_rows(result):
    return {r["check"]: r for r in result.json()["checks"] if r["kind"] == "source"}


def test_all_green_and_the_export_estimate(migrate, fake_neptune2: FakeNeptune2Server, declared):
    result = migrate("doctor", "--source", "neptune2", "-p", "ws/proj", *FAST_SET, "--json")
    assert result.code == 0, result.out
    rows = source_rows(result)
    token = fake_neptune2.api_token
    assert rows["credentials"]["detail"] == \
        f"API token ****{token[-4:]} from env var $NEPTUNE_API_TOKEN, for {fake_neptune2.base_url}"
    assert rows["reachable"]["ok"] and rows["auth"]["ok"]
    assert rows["project"]["detail"] == "ws/proj exists and is readable"
    assert rows["export plan"]["detail"].startswith("2 of 2 runs to export")  # the trashed run is excluded
    assert token not in result.out + result.err


def test_unknown_project_lists_the_visible_ones(migrate, declared):
    result = migrate("doctor", "--source", "neptune2", "-p", "ws/nope", *FAST_SET, "--json")
    assert result.code == 1
    project = source_rows(result)["project"]
    assert "'ws/nope' not found" in project["detail"] and "visible projects: ws/proj" in project["detail"]
    assert "export plan" not in source_rows(result)


def test_wrong_token_fails_auth(migrate, monkeypatch, fake_neptune2: FakeNeptune2Server, declared):
    monkeypatch.setenv("NEPTUNE_API_TOKEN", make_api_token(fake_neptune2.base_url, "not-a-known-key"))
    result = migrate("doctor", "--source", "neptune2", "-p", "ws/proj", *FAST_SET, "--json")
    assert result.code == 1
    auth = source_rows(result)["auth"]
    assert auth["status"] == "fail" and "rejected the API token in $NEPTUNE_API_TOKEN" in auth["detail"]
    assert auth["fix"].startswith("use a valid API token")


def test_server_down_is_fast(migrate, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("NEPTUNE_API_TOKEN", make_api_token(f"http://127.0.0.1:{port}", "k"))
    start = time.monotonic()
    result = migrate("doctor", "--source", "neptune2", "-p", "ws/proj", "--timeout", "1", "--json")
    assert time.monotonic() - start < 10
    assert result.code == 1
    rows = source_rows(result)
    assert rows["reachable"]["detail"] == f"127.0.0.1:{port} refused the connection" and rows["reachable"]["fix"]
    assert "auth" not in rows


def test_missing_and_malformed_token(migrate, monkeypatch):
    monkeypatch.delenv("NEPTUNE_API_TOKEN")
    missing = migrate("doctor", "--source", "neptune2", "-p", "ws/proj", "--json")
    assert missing.code == 1
    row = source_rows(missing)["credentials"]
    assert row["detail"] == "no Neptune API token: $NEPTUNE_API_TOKEN is not set"
    assert row["fix"].startswith("export NEPTUNE_API_TOKEN=<token>")
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "garbage-token-value-1234")
    malformed = source_rows(migrate("doctor", "--source", "neptune2", "--json"))["credentials"]
    assert "is not a Neptune API token" in malformed["detail"] and "****1234" in malformed["detail"]
