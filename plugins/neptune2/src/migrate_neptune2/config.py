"""`[source.neptune2]`: the plugin's options (all reachable as `--set source.neptune2.<key>=...`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from migrate_core import PluginConfig
from pydantic import Field

Class = Literal["parameters", "metrics", "series", "files"]
ALL_CLASSES: tuple[Class, ...] = ("parameters", "metrics", "series", "files")


class Neptune2Config(PluginConfig):
    """`[source.neptune2]`."""

    projects: list[str] = Field(default_factory=list,
                                description="Projects (workspace/project) to export; -p on the command line wins.")
    workspaces: list[str] = Field(default_factory=list,
                                  description="Export every visible project of these workspaces (discovery).")
    include: list[str] = Field(default_factory=list,
                               description="Regexes: keep only discovered projects matching one of them.")
    exclude: list[str] = Field(default_factory=list, description="Regexes: drop discovered projects matching any.")
    api_token_env: str = Field("NEPTUNE_API_TOKEN", description="Env var holding the API token (never the token).")
    objects: Literal["runs", "models"] = Field(
        "runs", description="runs, or the model registry (models and all versions of the selected models); "
                            "export models into their own storage root (--data-path/--files-path).")
    query: str | None = Field(None, description="NQL filter evaluated by the server, e.g. `params/lr`:float > 0.1.")
    classes: list[Class] = Field(default_factory=lambda: list(ALL_CLASSES),
                                 description="Attribute classes: parameters, metrics, series, files.")
    trashed: Literal["exclude", "include", "only"] = Field("exclude", description="Runs in the trash.")
    created_since: datetime | None = Field(None, description="Only runs created at or after this time "
                                                             "(modification time: --since/--until).")
    created_until: datetime | None = Field(None, description="Only runs created before this time.")
    skip_failed_attributes: bool = Field(False, description="Lossy: an attribute that fails to fetch is counted "
                                                            "as lost instead of failing its run.")
    requests_per_minute: int = Field(1000, ge=0, description="Client-side rate limit for all workers together "
                                                             "(Neptune documents 1000/min per user; 0 = off).")
    max_connections: int = Field(32, ge=1, description="HTTP keep-alive connections to the server (workers x "
                                                        "series_prefetch requests can be in flight).")
    timeout: float = Field(60.0, gt=0, description="Seconds to wait for one response.")
    retry_budget: float = Field(120.0, gt=0, description="Seconds one request may keep being retried "
                                                         "(5xx, 429, dropped connections).")
    retry_backoff: float = Field(0.5, ge=0, description="First retry delay in seconds; doubles per attempt, with "
                                                       "jitter (a Retry-After from the server wins).")
    runs_page_size: int = Field(500, ge=1, le=10_000, description="Runs per runs-table page.")
    series_page_size: int = Field(1000, ge=1, description="Points per series request (the client uses 1000).")
    series_prefetch: int = Field(4, ge=1, description="Requests in flight per series: series pages and file-series "
                                                      "elements (1 = one after another); all share the rate limit.")
    batch_rows: int = Field(100_000, ge=1000, description="Points per Arrow batch: bounds memory per series.")
    file_set_poll_timeout: float = Field(300.0, gt=0, description="Seconds to wait for a file set ZIP.")
