"""migrate: move ML experiment-tracking history between systems, losslessly.

Plugin authors need `hookimpl` and the spec records; see docs/writing-a-plugin.md.

The names below are resolved on first use (PEP 562), so that importing the package (every `migrate`
command does, `--help` included) does not also import pydantic, pluggy and importlib.metadata.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hookspecs import hookimpl
    from .specs import EmptyConfig, PluginConfig, SinkSpec, SourceSpec, StorageSpec

# The one place the version is written: the build (hatch, `[tool.hatch.version]`) reads it from here.
__version__ = "0.1.0"

__all__ = ["EmptyConfig", "PluginConfig", "SinkSpec", "SourceSpec", "StorageSpec", "__version__", "hookimpl"]

_HOME = {"hookimpl": "hookspecs", "EmptyConfig": "specs", "PluginConfig": "specs", "SinkSpec": "specs",
         "SourceSpec": "specs", "StorageSpec": "specs"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
