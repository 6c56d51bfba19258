"""Typed registration records: what a plugin returns from its `migrate_register_*` hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Kind = Literal["source", "storage", "sink"]


class PluginConfig(BaseModel):
    """Base for plugin config models: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EmptyConfig(PluginConfig):
    """For plugins that take no options."""


@dataclass(frozen=True)
class ComponentSpec:
    """One source, storage or sink a plugin offers.

    `factory(config)` builds the working object from a validated instance of `config_model`; keep heavy
    SDK imports inside it, so `migrate --help` and `plugins list` stay fast.
    """

    name: str
    description: str
    factory: Callable[[Any], Any]
    config_model: type[BaseModel] = EmptyConfig
    kind: Kind = field(default="source", init=False)
    # filled in by discovery, not by the plugin
    distribution: str = ""
    version: str = ""


@dataclass(frozen=True)
class SourceSpec(ComponentSpec):
    kind: Kind = field(default="source", init=False)


@dataclass(frozen=True)
class StorageSpec(ComponentSpec):
    kind: Kind = field(default="storage", init=False)


@dataclass(frozen=True)
class SinkSpec(ComponentSpec):
    kind: Kind = field(default="sink", init=False)
