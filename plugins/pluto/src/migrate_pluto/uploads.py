"""Files into Pluto: one presign + one streamed PUT per file, each recorded in the run's state.

File, file-series, file-set (directory) and artifact rows become Pluto files under the attribute path,
keeping original names; over-long string parameters become `value.txt` files. A load killed during an
upload PUTs to the saved presigned URL on resume; a finished upload is recognised by the file listing
plus the stored object's size, so nothing is uploaded or listed twice.
"""

from __future__ import annotations

import io
import json
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
BIG_KEY = "\x00big-string-parameters"  # tracked key of the over-long string parameters (never an attribute path)
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
        """Record one finished upload: a member of a directory row, or a whole row (its last member)."""
        path = pending["path"]
        if pending.get("last"):
            self.state.record.tracked[path] = [int(pending["row"]) + 1, pending["digest"]]
            self.have[path] = max(self.have.get(path, 0), int(pending["row"]) + 1)
            self.state.file_sub.pop(path, None)
        else:
            self.state.file_sub[path] = self.state.file_sub.get(path, 0) + 1

    def _in_pluto(self, log_name: str, file_name: str, size: int) -> bool:
        """Whether Pluto lists this file with its bytes stored. Asked only for runs Pluto already had when
        this load began (one listing per run): the listing, not our cache, says what an earlier load left."""
        if self.listed is None:
            answer = self.http.api_get("/api/runs/files", {"runId": self.state.pluto_id, "projectName": self.project},
                                       "file listing")
            self.listed = {}
            for row in answer.get("files") or []:
                key = (str(row.get("logName")), str(row.get("fileName")))
                self.listed.setdefault(key, []).append((int(row.get("fileSize") or 0), row.get("url")))
        rows = self.listed.get((log_name, file_name)) or []
        for listed_size, url in rows:
            if listed_size == size and url and self.http.stored_size(str(url)) == size:
                if len(rows) > 1:
                    self.ctx.report.lost("file rows Pluto holds twice, one without its bytes (an upload killed "
                                         "between presign and PUT)", len(rows) - 1)
                return True
        if rows:  # a row whose bytes never arrived: the upload below adds a second, complete one
            self.ctx.report.lost("file rows Pluto holds twice, one without its bytes (an upload killed "
                                 "between presign and PUT)", len(rows))
        return False

    def _file_payload(self, stored: str | None, members: list[tuple[str, int]]) -> bytes:
        sha = getattr(self, "_sha_by_path", None)
        if sha is None:
            sha = self._sha_by_path = {f.get("path"): f.get("sha256") for f in (self.reader.manifest or {}).get(
                "files") or [] if isinstance(f, dict)}
        return json.dumps([stored, [(rel, size, sha.get(rel)) for rel, size in members]]).encode()

    def _file_digests(self, rows: pa.Table) -> None:
        """A pass that sends nothing: digest the file rows as `_files` does."""
        steps, times, has_step = self._steps_times(rows)
        ok_step = has_step.to_numpy(zero_copy_only=False)
        paths = rows["attribute_path"].to_pylist()
        stored = [None if v is None else v.get("path") for v in rows["file_value"].to_pylist()]
        for i, path in enumerate(paths):
            members = []
            if stored[i] is None:
                self.ctx.report.lost("file rows without a path")
            else:
                try:
                    members = self._members(stored[i])
                except UnsafePathError:
                    self.ctx.report.lost("files with escaping paths")
                except (FileNotFoundError, NotADirectoryError):
                    self.ctx.report.lost("files missing from storage")
            self._row_key(path, int(steps[i]) if ok_step[i] else None, int(times[i]),
                          self._file_payload(stored[i], members), lines=False)
            name = self.encoded.get(path, names.encode_name(path))
            step = int(steps[i]) if ok_step[i] else 0
            for rel, size in members:
                file_name = self._file_name(name, rel, stored[i], step, len(members) > 1)
                self.expected_files.append((name, file_name, size))

    def _files(self, rows: pa.Table) -> None:
        steps, times, has_step = self._steps_times(rows)
        ok_step = has_step.to_numpy(zero_copy_only=False)
        paths = rows["attribute_path"].to_pylist()
        stored = [None if v is None else v.get("path") for v in rows["file_value"].to_pylist()]
        for i, path in enumerate(paths):
            name = self.encoded.get(path, names.encode_name(path))
            step = int(steps[i]) if ok_step[i] else 0
            members: list[tuple[str, int]] = []
            problem = None
            if stored[i] is None:
                problem = "file rows without a path"
            else:
                try:
                    members = self._members(stored[i])
                except UnsafePathError as exc:
                    problem = "files with escaping paths"
                    self.ctx.report.note(f"{path}: {exc}")
                except (FileNotFoundError, NotADirectoryError) as exc:
                    problem = "files missing from storage"
                    self.ctx.report.note(f"{path}: file {stored[i]!r} not found ({type(exc).__name__})")
            if problem:
                self.ctx.report.lost(problem)
            row = self.rows_digests.rows.get(path, 0)
            held = self._row_key(path, int(steps[i]) if ok_step[i] else None, int(times[i]),
                                 self._file_payload(stored[i], members), lines=False)
            digest = self.rows_digests.digest(path)
            names_of = [self._file_name(name, rel, stored[i], step, len(members) > 1) for rel, _size in members]
            if held:
                continue
            if not members:
                self._file_done({"path": path, "row": row, "digest": digest, "last": True})
                self._save()
                continue
            done_members = self.state.file_sub.get(path, 0)
            for k, ((rel, size), file_name) in enumerate(zip(members, names_of, strict=True)):
                if k < done_members:
                    continue
                pending = {"kind": "files", "path": path, "row": row, "digest": digest,
                           "last": k == len(members) - 1, "logName": name, "fileName": file_name, "size": size,
                           "rel": rel}
                if self.resumed and self._in_pluto(name, file_name, size):
                    self._file_done(pending)
                    self._save()
                    continue
                self._upload(pending, step, int(times[i]), caption=rel,
                             opener=lambda rel=rel: self.reader.open_file(rel))
            self.ctx.report.add(rows=1)

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

    def _upload(self, pending: dict[str, Any], step: int, time_ms: int, caption: str,
                opener: Callable[[], IO[bytes]]) -> None:
        kind = pending["kind"]
        log_name, file_name, size = pending["logName"], pending["fileName"], pending["size"]
        self.ctx.check_cancelled()
        if kind == "files":
            self._pipe.flush()
        self._beat()
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
            data = self.meta.big_strings[pending["index"]][1].encode("utf-8")
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
        """String parameters too long for the config, as `value.txt` files, tracked as rows of one key."""
        for index, (path, value) in enumerate(self.meta.big_strings):
            data = value.encode("utf-8")
            held = self._row_key(BIG_KEY, None, 0, big_payload(path, value), lines=False)
            if held:
                continue
            pending = {"kind": "big", "path": BIG_KEY, "row": index, "digest": self.rows_digests.digest(BIG_KEY),
                       "last": True, "logName": names.encode_name(path), "fileName": "value.txt", "size": len(data),
                       "rel": path, "index": index}
            if self.resumed and self._in_pluto(pending["logName"], "value.txt", len(data)):
                self._file_done(pending)
                self._save()
                continue
            self._upload(pending, 0, self.fallback_ms, caption=path, opener=lambda data=data: io.BytesIO(data))


def big_payload(path: str, value: str) -> bytes:
    """What the digest of an over-long string parameter covers: its path and its value."""
    return path.encode() + b"\0" + value.encode("utf-8")


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


