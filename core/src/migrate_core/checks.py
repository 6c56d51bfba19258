"""What `migrate doctor` checks are made of: one result record, the context a plugin's checks get, and the
probes every plugin needs (server reachable, path writable, secret masked). Plugins return `CheckResult`s
from their `migrate_doctor_checks` hook (docs/plugin-hooks.md); this module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class CheckResult:
    """One row of `migrate doctor`: `check` is a short name ("credentials"), `detail` what was found (never a
    secret), `fix` what to do about a warning or failure (empty for a pass)."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """Warnings pass: only a failure makes doctor exit 1."""
        return self.status != "fail"


def passed(check: str, detail: str) -> CheckResult:
    return CheckResult(check, "ok", detail)


def warned(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, "warn", detail, fix)


def failed(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, "fail", detail, fix)


@dataclass(frozen=True)
class ExportEstimate:
    """The export dry-run's forecast for the chosen source: what a storage must have room for."""

    runs: int
    rows: int
    bytes: int
    basis: str  # how `bytes` was obtained, shown to the user ("plan", "rows x 16 B")


@dataclass(frozen=True)
class DoctorContext:
    """What a plugin's checks may use besides its config.

    `projects` are the projects selected on the command line or in `[run]` (empty: the plugin's own config
    decides); `timeout` bounds every network probe, in seconds; `export_estimate` is set for storage checks
    when the source's checks passed and its dry run could be planned."""

    projects: tuple[str, ...] = ()
    timeout: float = 5.0
    export_estimate: ExportEstimate | None = None
    components: dict[str, str] = field(default_factory=dict)  # kind -> chosen plugin name


def env_secret(env: str, what: str, fix: str) -> tuple[str, CheckResult | None]:
    """The secret in environment variable `env`, stripped, and the failed `credentials` check when it is unset."""
    secret = os.environ.get(env, "").strip()
    if secret:
        return secret, None
    return "", failed("credentials", f"no {what}: ${env} is not set", fix)


def mask(secret: str) -> str:
    """A secret as it may be shown: its last 4 characters when it is long enough that they give nothing away."""
    secret = secret.strip()
    return f"****{secret[-4:]}" if len(secret) >= 16 else "****"


def reachable(url: str, timeout: float, verify_tls: bool = True, check: str = "reachable") -> CheckResult:
    """Can a TCP (and, for https, TLS) connection to `url`'s host and port be opened within `timeout`?

    Each way of failing gets its own message and fix: a name that does not resolve, a refused connection, a
    timeout, a TLS handshake or certificate error."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host or parts.scheme not in ("http", "https"):
        return failed(check, f"{url!r} is not an http(s) URL", "set the server URL as http(s)://host[:port]")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return failed(check, f"cannot resolve {host!r} (DNS: {exc.strerror or exc})",
                      "check the host name in the URL, your DNS and proxy settings")
    family, kind, proto, _name, address = infos[0]
    try:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        with contextlib.closing(sock):
            sock.connect(address)
            if parts.scheme == "https":
                context = ssl.create_default_context()
                if not verify_tls:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                with context.wrap_socket(sock, server_hostname=host) as tls:
                    version = tls.version()
                return passed(check, f"{where} answers ({version})")
    except ConnectionRefusedError:
        return failed(check, f"{where} refused the connection",
                      "start the server, or correct the host/port in the URL")
    except TimeoutError:
        return failed(check, f"{where} did not answer within {timeout:g} s",
                      "check the URL, firewall and VPN; a slow link needs doctor --timeout")
    except ssl.SSLCertVerificationError as exc:
        return failed(check, f"TLS certificate of {where} not trusted: {exc.verify_message}",
                      "install the server's CA (SSL_CERT_FILE) or, for a test server only, turn TLS checks off")
    except ssl.SSLError as exc:
        return failed(check, f"TLS handshake with {where} failed: {exc.reason or exc}",
                      "is it an https port? use http:// for a plain-HTTP server")
    except OSError as exc:
        return failed(check, f"cannot connect to {where}: {exc.strerror or exc}",
                      "check the URL and your network")
    return passed(check, f"{where} accepts connections")


def writable(path: Path, check: str) -> CheckResult:
    """Can files be created in `path`? Creates the missing folders and a probe file, and removes all of them:
    nothing is left behind, whatever the outcome."""
    path = Path(path).expanduser()
    missing: list[Path] = []
    existing = path.absolute()
    while not existing.exists():
        missing.append(existing)
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        return failed(check, f"{existing} is a file, not a folder", f"choose another path than {path}")
    probe = path / f".migrate-doctor-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
    except OSError as exc:
        return failed(check, f"cannot write in {path}: {exc.strerror or exc}",
                      f"make {existing} writable for this user, or choose another path")
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
        for folder in missing:  # deepest first: only the folders this probe made
            with contextlib.suppress(OSError):
                folder.rmdir()
    note = " (created on first export)" if missing else ""
    return passed(check, f"{path} writable{note}")


def free_bytes(path: Path) -> tuple[Path, int]:
    """Free space for an unprivileged user on the filesystem that holds (or will hold) `path`."""
    existing = Path(path).expanduser().absolute()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    return existing, shutil.disk_usage(existing).free


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def env_source(name: str) -> str | None:
    """The value of env var `name` if set and not blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def disk_space(path: Path, estimate: ExportEstimate | None, check: str = "free disk") -> CheckResult:
    """Free space where `path` lives against the export estimate: a warning when it is less than the
    estimate, a failure when it is less than a tenth of it (estimates are rough; a tenth is surely too little)."""
    where, free = free_bytes(path)
    if estimate is None:
        return passed(check, f"{human_bytes(free)} free at {where} (no export estimate to compare)")
    need = f"export needs ~{human_bytes(estimate.bytes)} ({estimate.runs} runs, {estimate.rows:,} rows, " \
           f"{estimate.basis})"
    found = f"{human_bytes(free)} free at {where}; {need}"
    if free < estimate.bytes / 10:
        return failed(check, found, "free disk space, or point the storage at a bigger disk "
                                    "(--data-path/--files-path), or export fewer runs at a time")
    if free < estimate.bytes:
        return warned(check, found, "free some disk space or choose a bigger disk before exporting everything")
    return passed(check, found)
