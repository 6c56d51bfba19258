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

    __version__: str

__all__ = ["EmptyConfig", "PluginConfig", "SinkSpec", "SourceSpec", "StorageSpec", "__version__", "hookimpl"]

_HOME = {"hookimpl": "hookspecs", "EmptyConfig": "specs", "PluginConfig": "specs", "SinkSpec": "specs",
         "SourceSpec": "specs", "StorageSpec": "specs"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("migrate-core")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _HOME:
        value = getattr(import_module(f".{_HOME[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
