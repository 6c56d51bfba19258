"""migrate: move ML experiment-tracking history between systems, losslessly.

Plugin authors need `hookimpl` and the spec records; see docs/writing-a-plugin.md.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("migrate-core")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

from .hookspecs import hookimpl  # noqa: E402
from .specs import EmptyConfig, PluginConfig, SinkSpec, SourceSpec, StorageSpec  # noqa: E402

__all__ = ["EmptyConfig", "PluginConfig", "SinkSpec", "SourceSpec", "StorageSpec", "__version__", "hookimpl"]
