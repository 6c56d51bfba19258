"""neptune2 source: Neptune 2.x servers read through the neptune 1.x client (neptune-client).

Only the registration lives here: the `neptune` SDK is imported inside the factory, so `migrate --help` and
`migrate plugins list` stay fast. See docs/neptune2.md.
"""

from __future__ import annotations

from migrate_core import SourceSpec, hookimpl

from .config import Neptune2Config

__version__ = "0.1.0"


def _make(config: Neptune2Config):
    from .source import Neptune2Source

    return Neptune2Source(config)


@hookimpl
def migrate_register_sources() -> list[SourceSpec]:
    return [SourceSpec(name="neptune2", description="Neptune 2.x through the neptune 1.x client (neptune-client)",
                       factory=_make, config_model=Neptune2Config)]


__all__ = ["Neptune2Config", "__version__", "migrate_register_sources"]


@hookimpl
def migrate_doctor_checks(kind, name, config, context):
    if (kind, name) != ("source", "neptune2"):
        return None
    from .doctor import checks

    return checks(config, context)
