"""`[source.neptune3]`: the plugin's options (all reachable as `--set source.neptune3.<key>=...`)."""

from __future__ import annotations

from typing import Literal

from migrate_core import PluginConfig
from pydantic import Field

Class = Literal["parameters", "metrics", "series", "files"]
ALL_CLASSES: tuple[Class, ...] = ("parameters", "metrics", "series", "files")


class Neptune3Config(PluginConfig):
    """`[source.neptune3]`."""

    projects: list[str] = Field(default_factory=list,
                                description="Projects (workspace/project) to export; -p on the command line wins.")
    workspaces: list[str] = Field(default_factory=list,
                                  description="Export every project of these workspaces that the token can see "
                                              "(discovery through the backend's project listing).")
    include: list[str] = Field(default_factory=list,
                               description="Regexes: keep only discovered projects matching one of them.")
    exclude: list[str] = Field(default_factory=list, description="Regexes: drop discovered projects matching any.")
    api_token_env: str = Field("NEPTUNE_API_TOKEN", description="Env var holding the API token (never the token).")
    query: str | None = Field(None, description="NQL evaluated by the server, e.g. `cfg/lr`:float > 0.01 "
                                                "(ANDed with the archived and time filters).")
    classes: list[Class] = Field(default_factory=lambda: list(ALL_CLASSES),
                                 description="Attribute classes: parameters, metrics, series, files.")
    archived: Literal["exclude", "include", "only"] = Field("exclude", description="Archived runs.")
    previews: bool = Field(False, description="Export metric preview points (as `<path>@preview` series with "
                                              "a `<path>@preview_completion` series); otherwise they are counted "
                                              "as lost.")
    materialise_lineage: bool = Field(False, description="Series of a fork include the history inherited from its "
                                                         "ancestors (lineage FULL) instead of only its own points.")
    skip_failed_attributes: bool = Field(False, description="Lossy: an attribute that fails to fetch is counted "
                                                            "as lost instead of failing its run.")
    attribute_workers: int = Field(1, ge=1, le=64, description="Attribute groups read concurrently within one run "
                                                              "(memory: see docs/neptune3.md).")
    retry_budget: float | None = Field(
        None, gt=0, description="Seconds neptune-query keeps retrying one request (5xx, 429, dropped "
                                "connections). Default: $NEPTUNE_QUERY_RETRY_SOFT_TIMEOUT if set, else 300.")
    page_points: int = Field(100_000, ge=1000, le=1_000_000,
                             description="Float points per series request: bounds memory per worker.")
    series_per_request: int = Field(100, ge=1, le=1000, description="Series asked for in one request.")
    runs_page_size: int = Field(1000, ge=1, le=10_000, description="Runs per runs-search page.")
    max_attribute_values: int = Field(5000, ge=1, le=10_000, description="Parameter values per request.")
    group_runs: int = Field(16, ge=1, le=100, description="Runs read together in one request per attribute class "
                                                         "(their first pages; longer series page on per run). "
                                                         "1 reads every run alone.")
