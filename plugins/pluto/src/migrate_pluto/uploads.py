"""Files into Pluto: one presign + one streamed PUT per file, each recorded in the run's state.

File, file-series, file-set (directory) and artifact rows become Pluto files under the attribute path,
keeping original names; over-long string parameters become `value.txt` files. A load killed during an
upload PUTs to the saved presigned URL on resume; a finished upload is recognised by the file listing
plus the stored object's size, so nothing is uploaded or listed twice.
"""

from __future__ import annotations

import io
import mimetypes
import time
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import IO, Any

import pyarrow as pa
from migrate_core.errors import UnsafePathError

from . import names
from .errors import PlutoError

CHUNK = 1 << 20
PRESIGN_FRESH = 50 * 60  # seconds; Pluto presigns uploads for one hour
IMAGE_EXT = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg"}


class FileUploads:
    """The file half of RunLoader (a mixin: it uses the loader's state, transport and reader)."""

    def _file_arrived(self, pending: dict[str, Any]) -> bool:
        answer = self.http.api_get(
            "/api/runs/files",
            {"runId": self.state.pluto_id, "projectName": self.project, "logName": pending["logName"]},
            "file listing",
        )
        for row in answer.get("files") or []:
            if row.get("fileName") == pending["fileName"] and row.get("url"):
                return self.http.stored_size(str(row["url"])) == pending["size"]
        return False

    def _file_done(self, pending: dict[str, Any]) -> None:
        if pending["kind"] == "big":
            self.state.big_strings += 1
        elif pending.get("last"):
            self.state.sent["files"] += 1
            self.state.file_sub = 0
        else:
            self.state.file_sub += 1


    def _files(self, rows: pa.Table, base: int) -> None:
        steps, times, has_step = self._steps_times(rows)
        ok_step = has_step.to_numpy(zero_copy_only=False)
        paths = rows["attribute_path"].to_pylist()
        stored = [None if v is None else v.get("path") for v in rows["file_value"].to_pylist()]
        counts = self.state.counts.setdefault("files", {})
        for i, path in enumerate(paths):
            number = base + i
            name = self.encoded.get(path, names.encode_name(path))
            step = int(steps[i]) if ok_step[i] else 0
            if stored[i] is None:
                self.ctx.report.lost("file rows without a path")
                self._skip_file_row(number)
                continue
            try:
                members = self._members(stored[i])
            except UnsafePathError as exc:
                self.ctx.report.lost("files with escaping paths")
                self.ctx.report.note(f"{path}: {exc}")
                self._skip_file_row(number)
                continue
            except (FileNotFoundError, NotADirectoryError) as exc:
                self.ctx.report.lost("files missing from storage")
                self.ctx.report.note(f"{path}: file {stored[i]!r} not found ({type(exc).__name__})")
                self._skip_file_row(number)
                continue
            for k, (rel, size) in enumerate(members):
                file_name = self._file_name(name, rel, stored[i], step, len(members) > 1)
                counts.setdefault(name, []).append(size)
                if number < self.state.sent["files"] or (number == self.state.sent["files"] and k < self.state.file_sub):
                    continue
                self._upload(number, name, file_name, rel, size, step, int(times[i]), last=k == len(members) - 1,
                             caption=rel, opener=lambda rel=rel: self.reader.open_file(rel))

    def _skip_file_row(self, number: int) -> None:
        if number == self.state.sent["files"]:
            self._pipe.flush()
            self.state.sent["files"] = number + 1
            self.state.file_sub = 0
            self._save()

    def _members(self, stored: str) -> list[tuple[str, int]]:
        """(relative path, size) of the file, or of every file of a directory (file sets)."""
        _refuse_escaping(stored)
        try:
            members = list(self.reader.storage.iter_files(self.reader.run, stored))
        except NotImplementedError:
            with self.reader.open_file(stored) as handle:
                return [(stored, _size(handle))]
        if not members:
            raise FileNotFoundError(stored)
        return members

    def _file_name(self, log_name: str, rel: str, stored: str, step: int, in_dir: bool) -> str:
        base = rel[len(stored):].lstrip("/") if in_dir and rel.startswith(stored) else PurePosixPath(rel).name
        candidate = names.encode_name(base).replace("/", "%2F") or "file"
        used = self._file_names.setdefault(log_name, set())
        if candidate in used:
            candidate = f"{step}-{candidate}"
            n = 1
            while candidate in used:
                candidate = f"{step}-{n}-{names.encode_name(base).replace('/', '%2F')}"
                n += 1
        used.add(candidate)
        return candidate

    def _upload(self, number: int, log_name: str, file_name: str, rel: str, size: int, step: int, time_ms: int,
                last: bool, caption: str, opener: Callable[[], IO[bytes]], kind: str = "files") -> None:
        self.ctx.check_cancelled()
        if kind == "files":
            self._pipe.flush()
        self._beat()
        pending: dict[str, Any] = {"kind": kind, "row": number, "logName": log_name, "fileName": file_name,
                                   "size": size, "last": last, "rel": rel}
        self.state.pending = pending
        self._save()
        ext = PurePosixPath(file_name).suffix.lower()
        log_type = "IMAGE" if ext in IMAGE_EXT else ("TEXT" if kind == "big" else "ARTIFACT")
        if self._registered.get(log_name) != log_type:
            # images show in Pluto's media panels; registered before the file, so a resume re-registers
            self.http.api_post("/api/runs/logName/add", {"runId": self.state.pluto_id, "logType": log_type,
                                                         "logName": [log_name]}, "log name registration")
            self._registered[log_name] = log_type
        entry = {"fileName": file_name, "fileSize": size, "fileType": ext[1:] or "bin", "time": max(time_ms, 0),
                 "logName": log_name, "step": step, "sampleIndex": 0, "caption": caption}
        urls = self.http.presign([entry], self.state.pluto_id or 0, self.project, "file upload (presign)")
        url = urls.get(file_name)
        if not url:
            raise PlutoError(f"Pluto's presign answer has no URL for {file_name!r}")
        # a load killed during the upload PUTs to this URL on resume instead of presigning again
        # (every presign adds a file row in Pluto)
        pending.update(url=url, presigned=time.time())
        self._save()
        self._put(url, opener, size, ext)
        self._file_done(pending)
        self.state.pending = None
        self._save()
        self.ctx.report.add(files=1, bytes=size)

    def _put(self, url: str, opener: Callable[[], IO[bytes]], size: int, ext: str) -> None:
        def chunks() -> Iterator[bytes]:
            with opener() as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        headers = {"Content-Type": _mime(ext), "Content-Length": str(size)}
        self.http.request("PUT", url, "file upload", content=chunks, headers=headers, auth=False)

    def _resume_upload(self, pending: dict[str, Any]) -> bool:
        """PUT an interrupted upload to the URL presigned for it, while that URL is fresh (presigned
        URLs live an hour). True when the file is now stored."""
        if not pending.get("url") or time.time() - float(pending.get("presigned") or 0) > PRESIGN_FRESH:
            return False
        if pending["kind"] == "big":
            data = self.meta.big_strings[pending["row"]][1].encode("utf-8")
            opener: Callable[[], IO[bytes]] = lambda: io.BytesIO(data)  # noqa: E731
        else:
            opener = lambda: self.reader.open_file(pending["rel"])  # noqa: E731
        ext = PurePosixPath(pending["fileName"]).suffix.lower()
        try:
            self._put(pending["url"], opener, int(pending["size"]), ext)
        except PlutoError as exc:
            self.ctx.report.note(f"resuming the upload of {pending['fileName']!r} failed ({exc}); presigning again")
            return False
        return True

    def _upload_big_strings(self) -> None:
        for index, (path, value) in enumerate(self.meta.big_strings):
            if index < self.state.big_strings:
                continue
            data = value.encode("utf-8")

            self._upload(index, names.encode_name(path), "value.txt", path, len(data), 0, self.fallback_ms,
                         last=True, caption=path, opener=lambda data=data: io.BytesIO(data), kind="big")



def _refuse_escaping(path: str) -> None:
    """Storage checks too; this makes the refusal independent of how a storage lists directories."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if not path or "\x00" in path or pure.is_absolute() or ".." in pure.parts or (len(path) > 1 and path[1] == ":"):
        raise UnsafePathError(f"refused file path {path!r}: it leaves the files root")


def _size(handle: IO[bytes]) -> int:
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(0)
    return size


def _mime(ext: str) -> str:

    return mimetypes.types_map.get(ext, "application/octet-stream")


