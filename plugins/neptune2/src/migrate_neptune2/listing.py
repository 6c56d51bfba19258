"""Listing runs, models and model versions from the runs table, every one exactly once.

The server caps `offset + limit` at 10 000. The neptune client then restarts with a strict
`sys/creation_time > last`, which skips runs that share the boundary timestamp (and in descending order never
reaches older runs). We sort ascending and restart the window with `>=` on the last creation time seen,
dropping the ids already listed at that instant, so ties at any page boundary survive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .client import Neptune2Client
from .errors import ApiError, Neptune2Error

MAX_SERVER_OFFSET = 10_000
LISTED_ATTRIBUTES = ("sys/id", "sys/creation_time", "sys/modification_time", "sys/trashed")


@dataclass(frozen=True)
class Entry:
    """One row of the runs (or models) table: what export needs to start without another lookup."""

    uuid: str
    sys_id: str
    type: str
    creation_time: str
    modification_time: datetime | None
    trashed: bool
    model_id: str | None = None


def nql_time(value: datetime) -> str:
    """A datetime as the NQL literal the server compares with (UTC, milliseconds, `Z`)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _conjunction(parts: list[str]) -> str:
    parts = [p for p in parts if p]
    if not parts:
        return ""
    return " AND ".join(f"({p})" for p in parts)


def _attr_value(attribute: dict[str, Any]) -> Any:
    props = attribute.get(f"{attribute.get('type')}Properties") or {}
    return props.get("value")


def _entry(raw: dict[str, Any]) -> Entry:
    values = {a.get("name"): _attr_value(a) for a in raw.get("attributes") or []}
    sys_id = values.get("sys/id")
    created = values.get("sys/creation_time")
    if not sys_id or not created:
        raise Neptune2Error(f"runs table entry {raw.get('experimentId')} lacks sys/id or sys/creation_time")
    return Entry(
        uuid=str(raw.get("experimentId")),
        sys_id=str(sys_id),
        type=str(raw.get("type") or "run"),
        creation_time=str(created),
        modification_time=parse_time(values.get("sys/modification_time")),
        trashed=bool(values.get("sys/trashed")),
        model_id=values.get("sys/model_id"),
    )


def search_entries(
    client: Neptune2Client,
    project_uuid: str,
    types: list[str],
    query: str,
    page_size: int,
    max_offset: int = MAX_SERVER_OFFSET,
    cancelled: Callable[[], bool] | None = None,
) -> Iterator[Entry]:
    """Every entry matching `query`, ascending by creation time, each exactly once."""
    page_size = max(1, min(page_size, max_offset))
    listed = LISTED_ATTRIBUTES + (("sys/model_id",) if "modelVersion" in types else ())
    lower: str | None = None  # restart point: creation time literal of the last window
    at_lower: set[str] = set()  # ids already listed whose creation time equals `lower`
    last_time: str | None = None
    at_last: set[str] = set()
    offset = 0
    while True:
        window = _conjunction([query, f'`sys/creation_time`:datetime >= "{lower}"' if lower else ""])
        limit = min(page_size, max_offset - offset)
        body = {
            "query": {"query": window},
            "sorting": {"dir": "ascending", "aggregationMode": "none",
                        "sortBy": {"name": "sys/creation_time", "type": "datetime"}},
            "attributeFilters": [{"path": p} for p in listed],
            "pagination": {"limit": limit, "offset": offset},
        }
        try:
            data = client.json("searchLeaderboardEntries", {"projectIdentifier": project_uuid, "type": types},
                               body=body, cancelled=cancelled)
        except ApiError as exc:
            if exc.status == 400 and query:
                raise Neptune2Error(f"the server rejected the query {query!r}: {exc}") from None
            raise
        raw_entries = data.get("entries") or []
        for raw in raw_entries:
            entry = _entry(raw)
            if lower is not None and entry.creation_time == lower and entry.sys_id in at_lower:
                continue
            if entry.creation_time != last_time:
                last_time, at_last = entry.creation_time, set()
            at_last.add(entry.sys_id)
            yield entry
        if len(raw_entries) < limit:
            return
        offset += len(raw_entries)
        if offset >= max_offset:
            if last_time == lower and len(at_last) >= max_offset:
                raise Neptune2Error(f"more than {max_offset} runs share the creation time {lower}; "
                                    "narrow the selection with a query")
            if last_time != lower:
                lower, at_lower = last_time, set(at_last)
            else:
                at_lower |= at_last
            offset = 0
