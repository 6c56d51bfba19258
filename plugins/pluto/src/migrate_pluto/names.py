"""Identity and naming: external run ids, project names, log names and tags, all deterministic.

Pluto's client reads a bare id such as `SAN-12` as a display id and digits as a numeric id, so the
external id always carries the source kind and project. Log names keep printable ASCII (`/` and spaces
included) and percent-encode everything else, `%` itself too, so the encoding is injective and the
original is recoverable; the original is also recorded in the run config.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

IMPORT_TAG = "import:neptune"
MAX_TAGS = 50
MAX_EXTERNAL_ID = 255
_SAFE = re.compile(r"^[ -$&-~]+$")  # printable ASCII except '%'


def source_kind(plugin: str | None) -> str:
    """Neptune 2.x, 3.x and foreign neptune-exporter dumps are the same source: `neptune`."""
    if not plugin or plugin in ("neptune2", "neptune3", "neptune", "neptune-exporter"):
        return "neptune"
    return plugin


def external_id(kind: str, project_id: str, run_id: str) -> str:
    """`<kind>:<project>:<run>`; over-long ids keep a readable prefix and a digest of the whole."""
    ext = f"{kind}:{project_id}:{run_id}"
    if len(ext) <= MAX_EXTERNAL_ID:
        return ext
    digest = hashlib.sha256(ext.encode()).hexdigest()[:32]
    return f"{ext[: MAX_EXTERNAL_ID - 33]}~{digest}"


def with_generation(external_id_: str, generation: int) -> str:
    """The external id of a run's n-th replacement (`--force`): `<id>#<n>`, within the length limit."""
    suffix = f"#{generation}"
    if len(external_id_) + len(suffix) <= MAX_EXTERNAL_ID:
        return external_id_ + suffix
    digest = hashlib.sha256(external_id_.encode()).hexdigest()[:32]
    return f"{external_id_[: MAX_EXTERNAL_ID - 33 - len(suffix)]}~{digest}{suffix}"


def project_name(project_id: str, configured: str | None) -> str:
    if configured:
        return configured
    return encode_name(project_id.replace("/", "-")) or "neptune-import"


def encode_name(name: str) -> str:
    """Printable ASCII stays; any other character (and `%`) becomes %XX of its UTF-8 bytes."""
    blank = not name.strip()  # Pluto refuses blank names: encode every character of one
    if not blank and _SAFE.match(name):
        return name
    if not name:
        return "%00empty"
    out = []
    for ch in name:
        if " " <= ch <= "~" and ch != "%" and not blank:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def run_tags(source_tags: Iterable[str], project_id: str) -> tuple[list[str], list[str]]:
    """(tags Pluto gets, tags that did not fit). The import tags come first so they always fit;
    Pluto allows 50 tags and one `group:*` tag."""
    tags = [IMPORT_TAG, f"import_project:{project_id}"]
    overflow: list[str] = []
    seen = set(tags)
    has_group = False
    for tag in sorted(set(source_tags)):
        if tag in seen:
            continue
        if tag.startswith("group:"):
            if has_group:
                overflow.append(tag)
                continue
            has_group = True
        if len(tags) >= MAX_TAGS:
            overflow.append(tag)
            continue
        tags.append(tag)
        seen.add(tag)
    return tags, overflow
