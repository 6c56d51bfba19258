"""Registers the `demo` source (the embedded default). The generator lives in demo_source.py."""

from __future__ import annotations

from pydantic import Field

from .hookspecs import hookimpl
from .specs import PluginConfig, SourceSpec


class DemoConfig(PluginConfig):
    """`[source.demo]`: how much deterministic Neptune-shaped data to generate."""

    seed: int = Field(0, description="Same seed, same data, byte for byte.")
    project: str = Field("demo/project", min_length=1, description="Project id of the generated runs.")
    runs: int = Field(3, ge=0, description="Number of runs; with fork=true the last one forks the first.")
    run_prefix: str = Field("DEMO", min_length=1, description="Run ids are <prefix>-1, <prefix>-2, ...")
    series_per_run: int = Field(4, ge=0, description="Float series per run (even: integer steps, odd: decimal).")
    points_per_series: int = Field(1000, ge=0, description="Points in each float series.")
    string_series_lines: int = Field(20, ge=0, description="Lines in each string series (stdout, stderr, notes).")
    histogram_steps: int = Field(10, ge=0, description="Steps in each of the two histogram series.")
    files: bool = Field(True, description="Generate files and a file series.")
    file_bytes: int = Field(4096, ge=0, description="Size of the generated binary file.")
    fork: bool = Field(True, description="Make the last run a fork of the first (sys/forking/*).")
    batch_rows: int = Field(250_000, ge=1, description="Rows per generated record batch.")


def _make(config: DemoConfig):
    from .demo_source import DemoSource

    return DemoSource(config)


@hookimpl
def migrate_register_sources() -> list[SourceSpec]:
    return [
        SourceSpec(
            name="demo",
            description="Deterministic Neptune-shaped runs with every attribute type (no server needed)",
            factory=_make,
            config_model=DemoConfig,
        )
    ]
