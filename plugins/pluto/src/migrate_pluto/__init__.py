"""pluto: the sink that loads stored Neptune runs into Pluto (Trainy), losslessly and resumably.

Only the registration lives here; the SDK and HTTP stack are imported inside the factory, so
`migrate --help` and `migrate plugins list` stay fast. The mapping is documented in docs/pluto-mapping.md.
"""

from __future__ import annotations

from migrate_core import SinkSpec, hookimpl

from .settings import PlutoConfig

__version__ = "0.1.0"


def _make(config: PlutoConfig):
    from .sink import PlutoSink

    return PlutoSink(config)


@hookimpl
def migrate_register_sinks() -> list[SinkSpec]:
    return [
        SinkSpec(
            name="pluto",
            description="Pluto (Trainy): runs, config, tags, metrics, logs, histograms, files, forks",
            factory=_make,
            config_model=PlutoConfig,
        )
    ]


__all__ = ["PlutoConfig", "__version__", "migrate_register_sinks"]


@hookimpl
def migrate_doctor_checks(kind, name, config, context):
    if (kind, name) != ("sink", "pluto"):
        return None
    from .doctor import checks

    return checks(config, context)
