"""`migrate config show`: the complete effective configuration, where each value came from, secrets masked.

Every key of `[run]`, `[executor]` and of each relevant plugin's model (the chosen source, storage and sink, and any
table the config sets) is shown, defaults included. The TOML is written by tomli-w and reads back
(tomllib) to the same values, so it can be saved as a migrate.toml; each line ends in its origin. TOML has
no null, so an unset key is a commented-out line, and so is a masked secret (a `********` saved as a
config would be taken for the value).
"""

from __future__ import annotations

from typing import Any

import tomli_w

from . import config as cfg

UNSET = "not set"
MASK = "********"


def effective(session: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """(nested effective config, masked, JSON-ready; dotted key -> origin) for `session` (cli.Session)."""
    from .plugins import KINDS

    values: dict[str, Any] = {"run": session.run.model_dump(mode="json"),
                              "executor": session.config.executor_config().model_dump(mode="json")}
    for kind in KINDS:
        chosen = getattr(session.run, kind)
        names = set(session.config.table(kind)) | ({chosen} if chosen else set())
        for name in sorted(names):
            if name in session.registry.components[kind]:
                _spec, model = session.plugin_config(kind, name)
                values.setdefault(kind, {})[name] = model.model_dump(mode="json")
    values = cfg.masked(values)
    files = [layer.label for layer in session.config.layers if layer.text is not None]
    origins = {}
    for dotted in _leaves(values):
        origin = session.config.origin(dotted)
        origins[dotted] = f"file {origin}" if any(origin.startswith(f) for f in files) else origin
    return values, origins


def _leaves(values: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out += _leaves(value, dotted)
        else:
            out.append(dotted)
    return out


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return value


def to_toml(values: dict[str, Any], origins: dict[str, str]) -> str:
    """The config as TOML, each key followed by `# <origin>`; unset keys and secrets commented out."""
    chunks = ["# migrate config show: the effective configuration; each value's origin after it"]
    for kind, tables in values.items():
        if kind in ("run", "executor"):
            chunks.append(_table([kind], tables, origins))
        else:
            for name, table in tables.items():
                chunks.append(_table([kind, name], table, origins))
    return "\n\n".join(chunk for chunk in chunks if chunk) + "\n"


def _table(path: list[str], table: dict[str, Any], origins: dict[str, str]) -> str:
    header = tomli_w.dumps(_nest(path, {})).strip()  # tomli-w quotes keys that need it
    rows: list[tuple[str, str]] = []  # (text, origin)
    later: list[str] = []  # sub-tables and arrays of tables, after this table's own keys
    for key, value in table.items():
        dotted = ".".join([*path, key])
        origin = origins.get(dotted, cfg.DEFAULT_ORIGIN)
        if isinstance(value, dict):
            later.append(_table([*path, key], value, origins))
            continue
        if value is None:
            rows.append((f"# {tomli_w.dumps({key: ''}).split(' = ')[0]} =", f"{origin}: {UNSET}"))
            continue
        line = tomli_w.dumps({key: value}).rstrip("\n")
        if line.startswith("[["):  # a list of tables: written as tables of its own
            later.append(f"# {dotted}: {origin}\n" + tomli_w.dumps(_nest(path, {key: value})).strip())
        elif _masked(value):
            rows.append(("# " + line.replace("\n", "\n# "), f"{origin} (secret, masked)"))
        else:
            rows.append((line, origin))
    width = min(40, max((len(text.rsplit("\n", 1)[-1]) for text, _ in rows), default=0))
    lines = [header]
    for text, origin in rows:
        *first, last = text.split("\n")  # tomli-w writes a non-empty array one item a line
        lines += first
        lines.append(f"{last:<{width}}  # {origin}")
    return "\n\n".join(["\n".join(lines), *later])


def _masked(value: Any) -> bool:
    return value == MASK or isinstance(value, list) and MASK in value
