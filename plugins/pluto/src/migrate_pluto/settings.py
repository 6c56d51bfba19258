"""`[sink.pluto]`: where to load and how hard to try. Secrets are never stored here, only the env var name."""

from __future__ import annotations

from migrate_core import PluginConfig
from pydantic import Field


class PlutoConfig(PluginConfig):
    """`[sink.pluto]` table."""

    project: str | None = Field(
        None, description="Pluto project for every run (default: the source project, '/' replaced by '-')."
    )
    api_key_env: str = Field(
        "PLUTO_API_KEY", description="Env var holding the API key; falls back to the key `pluto login` stored."
    )
    url_api: str | None = Field(None, description="API base URL (default: PLUTO_URL_API, else Pluto cloud).")
    url_ingest: str | None = Field(None, description="Ingest base URL (default: PLUTO_URL_INGEST, else Pluto cloud).")
    url_py: str | None = Field(None, description="py-service base URL for heartbeats (default: PLUTO_URL_PY, ...).")
    verify_tls: bool = Field(True, description="Verify TLS certificates (keep on outside tests).")
    timeout: float = Field(120.0, gt=0, description="Seconds per HTTP request (read/write); connect is 15 s max.")
    retries: int = Field(8, ge=0, description="Retries of a request on 5xx, 429, 408 and connection errors.")
    backoff: float = Field(1.0, ge=0, description="First retry delay in seconds; doubles per attempt, with jitter.")
    backoff_max: float = Field(60.0, ge=0, description="Longest delay between retries (Retry-After is honoured up to 10 min).")
    request_points: int = Field(50_000, ge=1, description="Metric points per ingest request.")
    request_bytes: int = Field(8 << 20, ge=1, description="Target body size of data/log ingest requests.")
    heartbeat: float = Field(30.0, gt=0, description="Seconds between heartbeats while a run loads (reaper: 150 s).")
    max_config_string: int = Field(
        65_536, ge=1, description="String parameters longer than this go to a file instead of the run config."
    )
    read_batch_rows: int = Field(65_536, ge=1, description="Rows per batch read from storage.")
