"""Configuration: `migrate.toml`, env vars, `--set` and flags, merged and validated per plugin.

Precedence: CLI flags and `--set` > env vars (`MIGRATE__<TABLE>__<NAME>__<KEY>`) > file > plugin defaults.
Tables: `[run]`, `[executor]`, `[source.<name>]`, `[storage.<name>]`, `[sink.<name>]`; each plugin's table is validated by
its own pydantic model. Errors name the dotted key and, where it came from the file, the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from .errors import ConfigError
from .specs import PluginConfig

DEFAULT_FILE = "migrate.toml"
ENV_PREFIX = "MIGRATE__"
TABLES = ("run", "source", "storage", "sink", "executor")
PLUGIN_TABLES = {"source": "source", "storage": "storage", "sink": "sink"}
DEFAULT_ORIGIN = "default"  # Config.origin() of a key no layer sets
SECRET_WORDS = re.compile(r"(token|secret|password|api_key|apikey|credential)", re.IGNORECASE)


def parse_shard(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N) with 0 <= I < N <= 1024, or ValueError saying what is wrong."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise ValueError(f"shard {text!r}: write I/N, e.g. 0/4 (shards are numbered from 0)")
    index, count = int(match[1]), int(match[2])
    if not 1 <= count <= 1024 or index >= count:
        raise ValueError(f"shard {text!r}: need 0 <= I < N <= 1024")
    return index, count


class RunConfig(PluginConfig):
    """`[run]`: which plugins, what to select, how hard to work."""

    source: str = Field("demo", description="Source plugin name (migrate plugins list).")
    storage: str = Field("local_fs", description="Storage plugin name.")
    sink: str | None = Field(None, description="Sink plugin name; required by run, load and verify.")
    workers: int = Field(4, ge=1, le=256, description="Runs processed concurrently.")
    projects: list[str] = Field(default_factory=list, description="Projects to move (empty: all).")
    runs: str | None = Field(None, description="Regex on run ids (search semantics).")
    attributes: str | None = Field(None, description="Regex on attribute paths (search semantics).")
    strict: bool = Field(False, description="Exit 1 when any value could not be carried.")
    since: datetime | None = Field(None, description="Only runs modified at or after this time (ISO 8601; UTC if no zone).")
    until: datetime | None = Field(None, description="Only runs modified before this time (ISO 8601; UTC if no zone).")
    shard: str | None = Field(None, description="I/N (export only): export just the runs of shard I of N, 0-based, "
                                                "so N processes can share one export into one storage.")

    processes: int = Field(1, ge=1, le=256, description="Export only: split the export over N processes (one per "
                                                        "core), each exporting its shard I/N into the storage; "
                                                        "load and run always use one.")

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @field_validator("runs", "attributes")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class ExecutorConfig(PluginConfig):
    """`[executor]`: where the runs of export, load and run are processed (one task per run)."""

    name: Literal["threads", "processes", "dask"] = Field(
        "threads", description="threads: this process (default); processes: a local process pool of --workers "
                               "processes; dask: a Dask cluster (`address`, else a local one).")
    address: str | None = Field(None, description="Dask only: the scheduler, e.g. tcp://10.0.0.5:8786; unset: a "
                                                  "LocalCluster on this machine.")


@dataclass
class Layer:
    """One source of settings: its nested values and a label for messages."""

    values: dict[str, Any]
    label: str
    text: str | None = None  # the file's text, for line numbers
    names: dict[str, str] = field(default_factory=dict)  # dotted key -> a finer label: `env MIGRATE__RUN__WORKERS`


@dataclass
class Config:
    """The merged settings, with enough provenance to explain an error."""

    layers: list[Layer] = field(default_factory=list)
    merged: dict[str, Any] = field(default_factory=dict)

    def table(self, *path: str) -> dict[str, Any]:
        node: Any = self.merged
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        return dict(node) if isinstance(node, dict) else {}

    def origin(self, dotted: str) -> str:
        """Where the value at `dotted` came from: `migrate.toml line 4`, `env MIGRATE__RUN__WORKERS`, `--set`,
        `flag --workers`, or `default` when no layer sets it."""
        keys = dotted.split(".")
        for layer in reversed(self.layers):
            if _has_path(layer.values, keys):
                if layer.text is not None:
                    line = find_line(layer.text, keys)
                    return f"{layer.label} line {line}" if line else layer.label
                for key in (dotted, *(k for k in layer.names if k.startswith(dotted + "."))):
                    if key in layer.names:
                        return layer.names[key]
                return layer.label
        return DEFAULT_ORIGIN

    def run_config(self) -> RunConfig:
        return validate(self, RunConfig, ("run",))

    def executor_config(self) -> ExecutorConfig:
        return validate(self, ExecutorConfig, ("executor",))


def _has_path(values: Mapping[str, Any], keys: list[str]) -> bool:
    node: Any = values
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def parse_value(text: str) -> Any:
    """A TOML literal (`3`, `true`, `["a"]`, `"x"`) if it parses, else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_path(target: dict[str, Any], keys: list[str], value: Any, label: str) -> None:
    node = target
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{label}: {'.'.join(keys)} conflicts with the value already set at {key!r}")
        node = child
    node[keys[-1]] = value


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def load(
    path: Path | None = None,
    sets: list[str] | tuple[str, ...] = (),
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> Config:
    """Read and merge every layer. `flags` maps dotted keys to values given by dedicated CLI options,
    `flag_names` those keys to the options' names (for `origin()`: `flag --data-path`)."""
    env = os.environ if env is None else env
    layers: list[Layer] = []
    if path is None:
        default = (cwd or Path.cwd()) / DEFAULT_FILE
        path = default if default.is_file() else None
    if path is not None:
        layers.append(_file_layer(Path(path)))
    layers.append(_env_layer(env))
    set_values: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. --set source.demo.runs=10")
        set_path(set_values, key.split("."), parse_value(raw.strip()), "--set")
    layers.append(Layer(set_values, "--set"))
    flag_values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for key, value in (flags or {}).items():
        if value is not None:
            set_path(flag_values, key.split("."), value, "command-line flag")
            if flag_names and key in flag_names:
                names[key] = f"flag {flag_names[key]}"
    layers.append(Layer(flag_values, "command-line flag", names=names))

    config = Config(layers=layers)
    for layer in layers:
        config.merged = deep_merge(config.merged, layer.values)
    _check_shape(config)
    return config


def _file_layer(path: Path) -> Layer:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    return Layer(values, str(path), text)


def _env_layer(env: Mapping[str, str]) -> Layer:
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name in sorted(env):
        if name.startswith(ENV_PREFIX):
            keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
            if any(not k for k in keys):
                raise ConfigError(f"env {name}: expected MIGRATE__<TABLE>__<...>__<KEY>")
            set_path(values, keys, parse_value(env[name]), f"env {name}")
            names[".".join(keys)] = f"env {name}"
    return Layer(values, "environment", names=names)


def _check_shape(config: Config) -> None:
    for key, value in config.merged.items():
        if key not in TABLES:
            raise ConfigError(
                f"unknown config table [{key}] ({config.origin(key)}); expected one of: {', '.join(TABLES)}"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a table ({config.origin(key)})")
        if key in PLUGIN_TABLES:
            for name, table in value.items():
                if not isinstance(table, dict):
                    raise ConfigError(
                        f"config key {key}.{name} must be a table [{key}.{name}] ({config.origin(f'{key}.{name}')})"
                    )


def validate(config: Config, model: type[BaseModel], path: tuple[str, ...]) -> Any:
    """Validate the table at `path` with `model`; the error names the dotted key and where it came from."""
    values = config.table(*path)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = ".".join(str(p) for p in (*path, *first["loc"]))
        if first["type"] == "extra_forbidden":
            known = ", ".join(sorted(model.model_fields)) or "none"
            message = f"unknown config key {loc} ({config.origin(loc)}); valid keys: {known}"
        else:
            got = first.get("input")
            message = f"config {loc} ({config.origin(loc)}): {first['msg']}"
            if not isinstance(got, dict | list) and got is not None and not _is_secret(loc):
                message += f" (got {got!r})"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise ConfigError(message) from None


def find_line(text: str, keys: list[str]) -> int | None:
    """1-based line of `keys` in TOML `text`: the key line inside its table, else the table header."""
    table: list[str] = []
    header_line = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("[") and not line.startswith("[["):
            table = [p.strip().strip('"') for p in line.strip("[]").split(".")]
            if table == keys:
                header_line = number
            continue
        match = re.match(r'^("?[^"=]+"?)\s*=', line)
        if match:
            local = [p.strip().strip('"') for p in match.group(1).split(".")]
            if table + local == keys:
                return number
    if header_line:
        return header_line
    if len(keys) > 1:
        return find_line(text, keys[:-1])
    return None


def _is_secret(dotted: str) -> bool:
    return bool(SECRET_WORDS.search(dotted.rsplit(".", 1)[-1]))


def masked(data: Any, key: str = "") -> Any:
    """A copy of `data` with secrets replaced by `********` (for `config show` and logs)."""
    if isinstance(data, SecretStr):
        return "********" if data.get_secret_value() else ""
    if isinstance(data, Mapping):
        return {k: masked(v, str(k)) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [masked(v, key) for v in data]
    if key and _is_secret(key) and data not in (None, ""):
        # keys naming an env var that holds the secret are fine to show
        return data if key.endswith("_env") else "********"
    if isinstance(data, Path):
        return str(data)
    return data
