"""Path safety: data is hostile, and file paths inside it must never reach outside their root."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from .errors import UnsafePathError
from .format import sanitize_path_part

_DRIVE = re.compile(r"^[A-Za-z]:")


def resolve_inside(root: Path, relative: str) -> Path:
    """`root / relative`, refusing absolute paths, `..`, NUL bytes and symlinks that lead outside `root`."""
    if not relative or "\x00" in relative:
        raise UnsafePathError(f"refused empty or NUL-containing file path {relative!r}")
    text = relative.replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or _DRIVE.match(text):
        raise UnsafePathError(f"refused absolute file path {relative!r}")
    if ".." in pure.parts:
        raise UnsafePathError(f"refused file path {relative!r}: it climbs out of the files root")
    root_real = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root_real, *pure.parts))
    if os.path.commonpath([real, root_real]) != root_real:
        raise UnsafePathError(f"refused file path {relative!r}: a symlink leads outside the files root")
    return Path(real)


def safe_segment(segment: str) -> str:
    """A single path segment we can create on any file system; odd ones become their sanitised form."""
    if segment in ("", ".", "..") or any(ch in segment for ch in '/\x00\\:*?"<>|') or len(segment) > 200:
        return sanitize_path_part(segment)
    if any(ord(ch) < 32 for ch in segment):
        return sanitize_path_part(segment)
    return segment


def safe_relative(path: str) -> str:
    """An attribute path such as `files/model/../x` turned into a safe relative path, segment by segment."""
    return "/".join(safe_segment(part) for part in path.split("/"))
