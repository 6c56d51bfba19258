"""local_fs on object stores (`s3://BUCKET/PREFIX`, and any other URL pyarrow.fs resolves), same layout.

Every byte goes through one `pyarrow.fs.FileSystem` per root (`FileSystem.from_uri`): S3 reads its endpoint,
region and credentials from the AWS SDK's standard environment (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3,
AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, profiles); we never see
or print them.

Object stores have no rename, so the commit protocol differs from local disk only in that step:

    1. the manifest is written with status "writing" (before any part, as on disk);
    2. leftovers of an earlier attempt are deleted;
    3. parts are streamed under their final names (`<run>_part_<N>.parquet`; S3 output streams are multipart
       uploads with bounded buffers), files streamed in 1 MiB chunks;
    4. the manifest is rewritten with status "complete" LAST.

A run is complete only when its manifest says so and lists parts that exist, so an export killed anywhere
before step 4 leaves a "writing" manifest, which `inspect` reports as incomplete and the next export redoes.
A neptune-exporter dump uploaded to a bucket has no manifest and is read by the usual part_0 rule.

The ledger is SQLite and needs a local directory: `state_path` must be a plain path; by default it is
`./migrate-state/<scheme>/<bucket>/<prefix>` for a URL data_path.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import IO, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from migrate_core.api import RunReport, RunWriter, StoredRun
from migrate_core.errors import DataError, UsageError
from migrate_core.format import (
    ENCODED_SCHEMA,
    SCHEMA,
    sanitize_path_part,
)
from migrate_core.manifest import FORMAT, finish_manifest, new_manifest
from migrate_core.paths import safe_relative, safe_segment

from . import URL_RE
from .storage import (
    COPY_CHUNK,
    MANIFEST_SUFFIX,
    PART_RE,
    LocalFsStorage,
    LocalRunWriter,
    _short,
    wanted_columns,
)

_s3_finalizer_registered = False


def is_url(value: Any) -> bool:
    return isinstance(value, str) and bool(URL_RE.match(value))


def local_path(value: str | Path) -> Path | None:
    """A plain path, or a `file://` URL as the local path it names; None for any other URL."""
    if not is_url(value):
        return Path(value)
    if str(value).lower().startswith("file://"):
        _fs, path = pafs.FileSystem.from_uri(str(value))
        return Path(path)
    return None


def default_state_path(url: str) -> Path:
    """`./migrate-state/<scheme>/<bucket>/<prefix>` for a data_path URL: SQLite needs a local directory."""
    scheme, _, rest = url.partition("://")
    parts = [safe_segment(p) for p in rest.split("?")[0].split("/") if p]
    return Path("migrate-state", safe_segment(scheme.lower()), *parts)


def _register_s3_finalizer() -> None:
    global _s3_finalizer_registered
    if not _s3_finalizer_registered:
        _s3_finalizer_registered = True
        # pyarrow's S3 must be finalised before the interpreter exits; pyarrow's own atexit hook
        # (ensure_s3_finalized) does it too, this one keeps it explicit wherever our storage used S3
        atexit.register(pafs.finalize_s3)


def _filesystem(value: str | Path, what: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path (no trailing slash) for a plain path or a URL."""
    if not is_url(value):
        return pafs.LocalFileSystem(), str(Path(value).resolve())
    text = str(value)
    if text.lower().startswith("s3://"):
        _register_s3_finalizer()
    try:
        fs, root = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise UsageError(f"{what} {text!r}: {_short(exc)} (use s3://BUCKET/PREFIX, file:///PATH or a plain path)") \
            from exc
    return fs, root.rstrip("/")


class ObjectStoreStorage(LocalFsStorage):
    """LocalFsStorage's layout and reading rules through pyarrow.fs; writes commit by manifest, not rename."""

    def __init__(
        self,
        data_path: str | Path,
        files_path: str | Path,
        state_path: str | Path | None = None,
        part_target_bytes: int = 50 * 1024 * 1024,
        row_group_rows: int = 262_144,
        compression: str = "snappy",
    ) -> None:
        self.data_url, self.files_url = str(data_path), str(files_path)
        self.fs, self.root = _filesystem(data_path, "data_path")
        self.files_fs, self.files_root = _filesystem(files_path, "files_path")
        if state_path is not None:
            local = local_path(state_path)
            if local is None:
                raise UsageError(f"state_path {state_path!r} must be a local directory (the ledger is SQLite); "
                                 "set storage.local_fs.state_path to a plain path")
            self.state_path = local
        elif is_url(data_path):
            self.state_path = default_state_path(str(data_path))
        else:
            self.state_path = Path(data_path).parent / "migrate-state"
        self.data_path = PurePosixPath(self.root)  # type: ignore[assignment] - paths inside self.fs
        self.files_path = PurePosixPath(self.files_root)  # type: ignore[assignment]
        self.part_target_bytes = max(int(part_target_bytes), 1024)
        self.row_group_rows = max(int(row_group_rows), 1)
        self.compression = compression
        self._unsynced = False
        self._checked = False
        self._check_root()  # a wrong bucket or endpoint stops the command here, once, not at every run

    def close(self) -> None:
        """Nothing to flush: every object is durable once its upload finished."""

    def describe(self) -> str:
        return f"local_fs:{self.data_url}"

    def _url(self, path: str) -> str:
        """A data path inside self.fs as the user's URL form, for messages and `location`."""
        return self.data_url.rstrip("/") + path[len(self.root):] if path.startswith(self.root) else path

    def _check_root(self) -> None:
        """A missing bucket or an unreachable endpoint as one clear line, once, before the first listing."""
        if self._checked:
            return
        for fs, root, url, what in ((self.fs, self.root, self.data_url, "data_path"),
                                    (self.files_fs, self.files_root, self.files_url, "files_path")):
            if not isinstance(fs, pafs.S3FileSystem):
                continue
            bucket = root.split("/")[0]
            try:
                info = fs.get_file_info(bucket)
            except OSError as exc:
                raise UsageError(f"{what} {url}: cannot reach the object store ({_short(exc)}); check "
                                 "AWS_ENDPOINT_URL / AWS_DEFAULT_REGION and the credentials") from exc
            if info.type == pafs.FileType.NotFound:
                raise UsageError(f"{what} {url}: bucket {bucket!r} does not exist; create it or fix the URL")
        self._checked = True

    # ---------------------------------------------------------------- listing

    def _names(self, directory: str) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True, recursive=False))
        return [PurePosixPath(i.path).name for i in infos if i.type == pafs.FileType.File]

    def list_runs(self, projects: Iterable[str] = ()) -> list[StoredRun]:
        self._check_root()
        wanted = {sanitize_path_part(p) for p in projects}
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True, recursive=False))
        runs: list[StoredRun] = []
        for info in sorted(infos, key=lambda i: i.path):
            name = PurePosixPath(info.path).name
            if info.type != pafs.FileType.Directory or name.startswith(".") or (wanted and name not in wanted):
                continue
            project_dir = PurePosixPath(self.root, name)
            groups = self._group(project_dir, self._names(str(project_dir)))  # type: ignore[arg-type]
            runs.extend(self._stored(project_dir, stem, groups[stem]) for stem in sorted(groups))  # type: ignore[arg-type]
        return runs

    def get_run(self, project_id: str, run_id: str) -> StoredRun | None:
        self._check_root()
        project_dir = PurePosixPath(self.root, sanitize_path_part(project_id))
        stem = sanitize_path_part(run_id)
        manifest_path = project_dir / f"{stem}{MANIFEST_SUFFIX}"
        manifest = self._read_manifest(manifest_path)
        if manifest is None:
            if self.fs.get_file_info(str(project_dir / f"{stem}_part_0.parquet")).type == pafs.FileType.NotFound:
                return None  # never exported (every export writes its manifest first): no listing of the project
        elif manifest.get("status") == "complete":
            quick = self._complete_quick(project_dir, stem, manifest)
            if quick is not None:
                return quick
        # names of the whole project folder: object stores list by prefix, pyarrow's selector by folder
        names = [n for n in self._names(str(project_dir)) if n.startswith(stem)]
        groups = self._group(project_dir, names)  # type: ignore[arg-type]
        if stem not in groups:
            return None
        return self._stored(project_dir, stem, groups[stem])  # type: ignore[arg-type]

    def _complete_quick(self, project_dir: PurePosixPath, stem: str, manifest: dict[str, Any]) -> StoredRun | None:
        """A complete manifest whose listed parts all exist (one HEAD each), without listing the project."""
        listed = manifest.get("parts")
        parts: dict[int, str] = {}
        for entry in listed if isinstance(listed, list) else [None]:
            if not isinstance(entry, dict):
                return None
            match = PART_RE.match(str(entry.get("name", "")))
            if not match or match["tmp"] or match["stem"] != stem:
                return None
            parts[int(match["n"])] = str(project_dir / entry["name"])
        if 0 not in parts or any(i.type != pafs.FileType.File for i in self.fs.get_file_info(list(parts.values()))):
            return None
        return StoredRun(project_id=manifest.get("project_id") or project_dir.name, run_id=manifest.get("run_id") or stem,
                         complete=True, manifest=manifest, location=self._url(str(project_dir / stem)), problem=None,
                         parts=tuple(parts[n] for n in sorted(parts)))

    def _read_manifest(self, path: Any) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(str(path)) as handle:
                data = json.loads(handle.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return {"format": FORMAT, "status": "corrupt", "error": f"unreadable manifest {PurePosixPath(path).name}: "
                    f"{_short(exc)}"}
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return {"format": FORMAT, "status": "corrupt",
                    "error": f"{PurePosixPath(path).name} is not a migrate run manifest"}
        return data

    def _stored(self, project_dir: Any, stem: str, paths: list[Any]) -> StoredRun:
        run = super()._stored(project_dir, stem, paths)
        return dataclasses.replace(run, location=self._url(run.location))

    def _open_parquet(self, path: Any) -> Any:
        return self.fs.open_input_file(str(path))

    # ---------------------------------------------------------------- reading

    def read(
        self, run: StoredRun, columns: Iterable[str] | None = None, batch_rows: int = 262_144
    ) -> Iterator[pa.RecordBatch]:
        wanted = wanted_columns(columns)
        for part in run.parts:
            try:
                handle = self.fs.open_input_file(part)
            except OSError as exc:
                raise DataError(f"{self._url(part)}: cannot open ({_short(exc)})") from exc
            with handle:
                try:
                    yield from self._read_part(handle, wanted, batch_rows)  # type: ignore[arg-type]
                except DataError as exc:  # name the object, not the stream, in the message
                    text, prefix = str(exc), str(handle)
                    raise DataError(self._url(part) + text[len(prefix):] if text.startswith(prefix) else text) \
                        from exc.__cause__

    def _files_object(self, project_id: str, path: str) -> str:
        """The object path of a run file: the same refusals as on disk (absolute, `..`, NUL), no symlinks."""
        if not path or "\x00" in path:
            raise_unsafe(path)
        pure = PurePosixPath(path.replace("\\", "/"))
        if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", path):
            raise_unsafe(path)
        return str(PurePosixPath(self.files_root, sanitize_path_part(project_id), *pure.parts))

    def open_file(self, run: StoredRun, path: str) -> IO[bytes]:
        return self.files_fs.open_input_stream(self._files_object(run.project_id, path))  # type: ignore[return-value]

    def iter_files(self, run: StoredRun, path: str) -> Iterator[tuple[str, int]]:
        full = self._files_object(run.project_id, path)
        info = self.files_fs.get_file_info(full)
        if info.type == pafs.FileType.File:
            yield path, info.size
            return
        base = str(PurePosixPath(self.files_root, sanitize_path_part(run.project_id)))
        infos = self.files_fs.get_file_info(pafs.FileSelector(full, allow_not_found=True, recursive=True))
        for inner in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
            yield str(PurePosixPath(inner.path).relative_to(base)), inner.size

    def lineage(self, run: StoredRun) -> dict[str, Any]:
        if run.manifest is not None:
            return dict(run.manifest.get("lineage") or {})
        from migrate_core.manifest import LINEAGE_PARENT, LINEAGE_STEP, AttributeStats

        stats = AttributeStats()
        for part in run.parts:
            try:
                table = pq.read_table(part, filesystem=self.fs, schema=SCHEMA,
                                      filters=[("attribute_path", "in", [LINEAGE_PARENT, LINEAGE_STEP])])
            except Exception as exc:
                raise DataError(f"{self._url(part)}: not a readable parquet file ({_short(exc)})") from exc
            stats.update(table)
        return stats.lineage()

    # ---------------------------------------------------------------- writing

    def begin_run(self, project_id: str, run_id: str, source: Mapping[str, Any]) -> RunWriter:
        self._check_root()
        return ObjectRunWriter(self, project_id, run_id, dict(source))


def raise_unsafe(path: str) -> None:
    from migrate_core.errors import UnsafePathError

    raise UnsafePathError(f"refused file path {path!r}: empty, absolute, NUL-containing or climbing out of the "
                          "files root")


class ObjectRunWriter(LocalRunWriter):
    """Parts under their final names, files streamed, the "complete" manifest last (no rename on object stores)."""

    def __init__(self, storage: ObjectStoreStorage, project_id: str, run_id: str, source: dict[str, Any]) -> None:
        self.storage = storage  # type: ignore[assignment]
        self.fs = storage.fs
        self.project_id = project_id
        self.run_id = run_id
        self.stem = sanitize_path_part(run_id)
        self.project_dir = PurePosixPath(storage.root, sanitize_path_part(project_id))  # type: ignore[assignment]
        self.files_root = PurePosixPath(storage.files_root, sanitize_path_part(project_id))  # type: ignore[assignment]
        self.run_files_dir = self.files_root / self.stem
        self.manifest_path = self.project_dir / f"{self.stem}{MANIFEST_SUFFIX}"
        from migrate_core.manifest import AttributeStats

        self.stats = AttributeStats()
        self.files: list[dict[str, Any]] = []
        self._used_paths: set[str] = set()
        self._buffer: list[pa.Table] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._parts: list[dict[str, Any]] = []
        self._sink: pa.NativeFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._part_rows = 0
        self._part_bytes = 0
        self._closed = False
        self.fs.create_dir(str(self.project_dir), recursive=True)  # no-op on S3; real folders elsewhere
        self._manifest = new_manifest(project_id, run_id, source, "migrate-local-fs")
        # "writing" before any part: from here until the last step a reader sees an incomplete run
        self._write_manifest(self._manifest)
        self._remove_leftovers()

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        data = json.dumps(manifest, indent=1, sort_keys=True, default=str).encode()
        with self.fs.open_output_stream(str(self.manifest_path)) as out:  # one PUT: the old object or the new
            out.write(data)

    def _remove_leftovers(self) -> None:  # type: ignore[override]
        for name in self.storage._names(str(self.project_dir)):  # type: ignore[attr-defined]
            match = PART_RE.match(name)
            if match and match["stem"] == self.stem:
                self.fs.delete_file(str(self.project_dir / name))
        files_fs = self.storage.files_fs  # type: ignore[attr-defined]
        if files_fs.get_file_info(str(self.run_files_dir)).type != pafs.FileType.NotFound:
            files_fs.delete_dir(str(self.run_files_dir))

    def _part_path(self, n: int, tmp: bool = False) -> PurePosixPath:  # type: ignore[override]
        return self.project_dir / f"{self.stem}_part_{n}.parquet"  # final names: no rename here

    def _open_part(self) -> None:
        self._sink = self.fs.open_output_stream(str(self._part_path(len(self._parts))))
        self._writer = self.storage._parquet_writer(self._sink)
        self._part_rows = 0

    def _write_slice(self, table: pa.Table) -> None:
        if self._writer is not None and self._sink is not None and self._sink.tell() >= self.storage.part_target_bytes:
            self._close_part()
        if self._writer is None:
            self._open_part()
        assert self._writer is not None
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._part_rows += table.num_rows

    def _close_part(self) -> None:
        assert self._writer is not None and self._sink is not None
        self._writer.close()
        size = self._sink.tell()
        self._sink.close()  # completes the multipart upload
        self._parts.append({"name": self._part_path(len(self._parts)).name, "rows": self._part_rows, "bytes": size})
        self._writer, self._sink = None, None

    def write_file(self, attribute_path: str, name: str, data: bytes | IO[bytes] | Path) -> str:
        relative = f"{self.stem}/{safe_relative(attribute_path)}/{safe_segment(name or 'file')}"
        relative = self._unique(relative)
        target = self.storage._files_object(self.project_id, relative)  # type: ignore[attr-defined]
        files_fs = self.storage.files_fs  # type: ignore[attr-defined]
        files_fs.create_dir(str(PurePosixPath(target).parent), recursive=True)
        digest = hashlib.sha256()
        size = 0
        with files_fs.open_output_stream(target) as out:
            if isinstance(data, bytes | bytearray | memoryview):
                out.write(data)
                digest.update(data)
                size = len(data)
            else:
                handle = Path(data).open("rb") if isinstance(data, str | Path) else data  # noqa: SIM115
                try:
                    while chunk := handle.read(COPY_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                finally:
                    if handle is not data:
                        handle.close()
        self.files.append({"path": relative, "attribute_path": attribute_path, "name": name, "size": size,
                           "sha256": digest.hexdigest()})
        return relative

    def commit(self, lineage: Mapping[str, Any] | None = None, report: RunReport | None = None) -> None:
        self._flush()
        if self._writer is None and not self._parts:
            self._open_part()  # an empty run still gets part_0, so it is complete and never re-exported forever
            assert self._writer is not None
            self._writer.write_table(ENCODED_SCHEMA.empty_table())
        if self._writer is not None:
            self._close_part()
        manifest = finish_manifest(self._manifest, self.stats, self._parts, self.files,
                                   dict(lineage) if lineage else None, report.as_dict() if report else None)
        self._write_manifest(manifest)  # LAST: only now does the run read as complete
        self._closed = True

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None:
                self._writer.close()
            if self._sink is not None:
                self._sink.close()
        finally:
            self._writer, self._sink = None, None
            # the "writing" manifest stays (the run reads incomplete); its parts go now, or at the next export
            for n in range(len(self._parts) + 1):
                path = str(self._part_path(n))
                if self.fs.get_file_info(path).type == pafs.FileType.File:
                    self.fs.delete_file(path)
