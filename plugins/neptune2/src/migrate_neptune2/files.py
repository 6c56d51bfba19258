"""Files, file series, file sets and artifacts: bytes into the storage, one row per stored file.

- A file keeps its original name and extension (Content-Disposition, else `name.ext` from the structure).
- A file series gets each element's real step and timestamp: from the image-series listing when the server
  includes them, else from the channel API; only when neither answers is the index used, and counted.
- A file set is downloaded as the server's ZIP and unpacked: each member is stored and gets its own row.
- An artifact is its file list (`files_list.json`, as neptune-exporter writes it); the files' content lives
  in the user's own storage (S3, local paths), which Neptune does not serve, and is counted as not carried.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from migrate_core.api import RunContext, RunWriter
from migrate_core.format import make_batch, steps_from_float, timestamps_ms

from .client import Neptune2Client
from .errors import AttributeFetchError, Neptune2Error
from .ordered import ordered_map


class FileExporter:
    def __init__(self, client: Neptune2Client, writer: RunWriter, ctx: RunContext, project_uuid: str,
                 page_size: int, poll_timeout: float, prefetch: int = 1) -> None:
        self.client = client
        self.writer = writer
        self.ctx = ctx
        self.project_uuid = project_uuid
        self.page_size = page_size
        self.poll_timeout = poll_timeout
        self.prefetch = prefetch
        self.cancelled: Callable[[], bool] = lambda: ctx.cancelled

    def _store(self, path: str, name: str, handle: Any, size: int) -> dict[str, str]:
        stored = self.writer.write_file(path, name, handle)
        self.ctx.report.add(files=1, bytes=size)
        return {"path": stored}

    def _rows(self, path: str, kind: str, files: list[dict[str, str]], **columns: Any) -> pa.RecordBatch:
        return make_batch(self.writer.project_id, self.writer.run_id, path, kind, len(files), file_value=files,
                          **columns)

    # ------------------------------------------------------------------------------------------ file

    def file(self, experiment_id: str, path: str, props: dict[str, Any]) -> pa.RecordBatch:
        handle, size, disposition, _ = self.client.download(
            "downloadAttribute", {"experimentId": experiment_id, "attribute": path}, cancelled=self.cancelled)
        with handle:
            name = disposition or _joined_name(props.get("name"), props.get("ext")) or posixpath.basename(path)
            stored = self._store(path, name, handle, size)
        return self._rows(path, "file", [stored])

    # ------------------------------------------------------------------------------------------ file series

    def file_series(self, experiment_id: str, path: str, props: dict[str, Any]) -> pa.RecordBatch | None:
        points = self._series_points(experiment_id, path)
        total = len(points)
        steps = [p.get("step") for p in points]
        stamps = [p.get("timestampMillis") for p in points]
        if total and any(s is None for s in steps) and props.get("channelId") and self.client.has("getChannelValues"):
            channel = self._channel_points(props["channelId"])
            if len(channel) == total:
                steps = [p.get("x") for p in channel]
                stamps = [p.get("timestampMillis") for p in channel]
        unknown = np.array([s is None for s in steps], dtype=bool)
        if unknown.any():
            self.ctx.report.lost("file_series_step_unknown", int(unknown.sum()))
        def fetch(index: int):
            self.ctx.check_cancelled()
            return index, self.client.download(
                "getImageSeriesValue", {"experimentId": experiment_id, "attribute": path, "index": index},
                accept="*/*", cancelled=self.cancelled)

        stored = []
        for index, (handle, size, disposition, content_type) in ordered_map(fetch, range(total), self.prefetch):
            with handle:
                subtype = (content_type or "application/octet-stream").split(";")[0].split("/")[-1]
                stored.append(self._store(path, disposition or f"{index}.{subtype}", handle, size))
        if not stored:
            return None
        step_values = np.array([index if s is None else s for index, s in enumerate(steps)], dtype=np.float64)
        known_ts = all(t is not None for t in stamps)
        timestamp = timestamps_ms(np.array(stamps, dtype=np.int64)) if known_ts else pa.array(
            stamps, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
        return self._rows(path, "file_series", stored, step=steps_from_float(step_values), timestamp=timestamp)

    def _series_points(self, experiment_id: str, path: str) -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = []
        while True:
            data = self.client.json("getImageSeriesValues", {"experimentId": experiment_id, "attribute": path,
                                                             "limit": self.page_size, "offset": len(points)},
                                    cancelled=self.cancelled)
            total = int(data.get("totalItemCount") or 0)
            values = data.get("values") or []
            points += values
            if not values or len(points) >= total:
                break
        if len(points) < total:  # the listing carries no elements: only the count is known
            points += [{}] * (total - len(points))
        return points[:total]

    def _channel_points(self, channel_id: str) -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = []
        while True:
            try:
                data = self.client.json("getChannelValues", {"limit": self.page_size, "offset": len(points)},
                                        path_params={"channelId": channel_id}, cancelled=self.cancelled)
            except Neptune2Error:
                return []
            values = data.get("values") or []
            points += values
            if not values or len(points) >= int(data.get("totalItemCount") or 0):
                return points

    # ------------------------------------------------------------------------------------------ file set

    def file_set(self, experiment_id: str, path: str) -> pa.RecordBatch | None:
        params = {"experimentId": experiment_id, "attribute": path}
        request = self.client.json("prepareForDownloadFileSetAttributeZip", params, cancelled=self.cancelled)
        url = request.get("downloadUrl")
        delay, deadline = 0.0, time.monotonic() + self.poll_timeout
        while not url:  # first poll at once (small sets are ready), then back off from 0.5 s to 5 s
            if time.monotonic() > deadline:
                raise AttributeFetchError(f"{path}: the server did not prepare the file set ZIP "
                                          f"within {self.poll_timeout:.0f}s")
            self.ctx.check_cancelled()
            time.sleep(delay)
            delay = min(max(delay * 2, 0.5), 5.0)
            request = self.client.json("getDownloadPrepareRequest", {"id": request.get("id")},
                                       cancelled=self.cancelled)
            url = request.get("downloadUrl")
        handle, _, _, _ = self.client.download("downloadFileSetZip", url=url, accept="application/zip",
                                               cancelled=self.cancelled)
        stored = []
        with handle, tempfile.TemporaryFile() as archive:
            shutil.copyfileobj(handle, archive)
            try:
                zf = zipfile.ZipFile(archive)
            except zipfile.BadZipFile:
                raise AttributeFetchError(f"{path}: the file set download is not a ZIP archive") from None
            with zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    self.ctx.check_cancelled()
                    folder, name = posixpath.split(info.filename.lstrip("/"))
                    target = f"{path}/{folder}" if folder else path
                    with zf.open(info) as member:
                        stored.append(self._store(target, name, member, info.file_size))
        return self._rows(path, "file_set", stored) if stored else None

    # ------------------------------------------------------------------------------------------ artifact

    def artifact(self, path: str, props: dict[str, Any]) -> pa.RecordBatch | None:
        digest = props.get("hash")
        if not self.client.has("listArtifactFiles"):
            self.ctx.report.lost("artifact file lists (artifacts disabled on the server)")
            return None
        data = self.client.json("listArtifactFiles", {"projectIdentifier": self.project_uuid, "hash": digest},
                                headers={"X-Neptune-Artifact-Api-Version": "2"}, cancelled=self.cancelled)
        files = data.get("files") or []
        listing = json.dumps(files, indent=2, ensure_ascii=False).encode()
        stored = self._store(path, "files_list.json", listing, len(listing))
        self.ctx.report.lost("artifact file contents (kept in the artifact's own storage)", len(files))
        return self._rows(path, "artifact", [stored])


def _joined_name(name: Any, ext: Any) -> str | None:
    if not name:
        return None
    return f"{name}.{ext}" if ext else str(name)
