"""neptune3 source: Neptune 3.x servers read through neptune-query (unmodified).

Only the registration lives here: neptune-query is imported inside the factory, so `migrate --help` and
`migrate plugins list` stay fast. See docs/neptune3.md.
"""

from __future__ import annotations

from migrate_core import SourceSpec, hookimpl

from .config import Neptune3Config

__version__ = "0.1.0"


def _make(config: Neptune3Config):
    from .source import Neptune3Source

    return Neptune3Source(config)


@hookimpl
def migrate_register_sources() -> list[SourceSpec]:
    return [SourceSpec(name="neptune3", description="Neptune 3.x through neptune-query",
                       factory=_make, config_model=Neptune3Config)]


__all__ = ["Neptune3Config", "__version__", "migrate_register_sources"]


@hookimpl
def migrate_doctor_checks(kind, name, config, context):
    if (kind, name) != ("source", "neptune3"):
        return None
    from .doctor import checks

    return checks(config, context)
