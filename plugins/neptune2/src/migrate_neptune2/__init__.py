"""neptune2 source: Neptune 2.x servers read through the neptune 1.x client (neptune-client).

Registered so that `plugins list`, config validation and `--help` know it; the export itself is
tracked in issue 5 and raises a clear error until it lands.
"""

from __future__ import annotations

from migrate_core import PluginConfig, SourceSpec, hookimpl
from migrate_core.errors import PluginError
from pydantic import Field

__version__ = "0.1.0"


class Neptune2Config(PluginConfig):
    """`[source.neptune2]`."""

    projects: list[str] = Field(default_factory=list, description="Projects (workspace/project) to export.")
    api_token_env: str = Field("NEPTUNE_API_TOKEN", description="Env var holding the API token (never the token).")


def _make(config: Neptune2Config):
    raise PluginError("the neptune2 source is not available yet in this release (issue 5); "
                      "neptune-exporter dumps already load with `migrate load`")


@hookimpl
def migrate_register_sources() -> list[SourceSpec]:
    return [SourceSpec(name="neptune2", description="Neptune 2.x through the neptune 1.x client (neptune-client) (not yet available)",
                       factory=_make, config_model=Neptune2Config)]
