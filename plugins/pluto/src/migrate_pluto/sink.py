"""The Pluto sink: `load_run` and `verify_run` for the orchestrator, one HTTP client per run."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from migrate_core.api import RunContext, RunReader, Sink, VerifyResult

from . import __version__, credentials
from .loader import RunLoader
from .names import source_kind
from .settings import PlutoConfig
from .state import StateStore
from .transport import Circuit, Transport, retry_policy, tls_context


class PlutoSink(Sink):
    name = "pluto"
    version = __version__

    def __init__(self, config: PlutoConfig) -> None:
        self.config = config
        self.endpoints = credentials.endpoints(config)
        self._api_key = credentials.api_key(config)
        self.policy = retry_policy(config.retries, config.backoff, config.backoff_max)
        self.circuit = Circuit()
        # loading the CA bundle costs ~0.1 s of CPU; OpenSSL does it without the GIL, so it overlaps the
        # storage listing and the first scans instead of delaying the first request (the first client waits)
        threading.Thread(target=tls_context, args=(config.verify_tls,), name="pluto-tls", daemon=True).start()

    def target(self) -> str:
        return f"pluto:{self.endpoints.api}/{self.config.project or '<source project>'}"

    def predict_losses(self, reader: RunReader) -> dict[str, int]:
        """What a load of this run would count as not carried: the same code reads the run, sends nothing."""
        from migrate_core.api import RunReport

        report = RunReport()
        ctx = RunContext(report, threading.Event())
        # the state directory is read (a fork's parent plan), never made: a dry run writes nothing
        store = StateStore(reader.storage.state_dir() / "plugins" / "pluto", self.target())
        loader = RunLoader(self.config, None, store, reader, ctx, self.kind(reader))  # type: ignore[arg-type]
        loader.predict()
        return dict(report.losses)

    def transport(self, ctx: RunContext | None = None) -> Transport:
        cancel = ctx.cancel_event if ctx is not None else None
        on_retry = (lambda event: ctx.event("retries")) if ctx is not None else None  # shown live, counted
        return Transport(self.endpoints, self._api_key, self.policy, self.config.timeout, self.config.verify_tls,
                         cancel, self.circuit, on_retry)

    def store(self, reader: RunReader) -> StateStore:
        return StateStore(reader.storage.plugin_state_dir("pluto"), self.target())

    def kind(self, reader: RunReader) -> str:
        source = (reader.manifest or {}).get("source") or {}
        return source_kind(source.get("plugin") if isinstance(source, dict) else None)

    def load_run(self, reader: RunReader, ctx: RunContext) -> None:
        http = self.transport(ctx)
        try:
            RunLoader(self.config, http, self.store(reader), reader, ctx, self.kind(reader)).load()
        finally:
            http.close()

    def verify_run(self, reader: RunReader, ctx: RunContext) -> VerifyResult:
        from .verify import verify_run

        http = self.transport(ctx)
        try:
            return verify_run(self, http, reader, ctx)
        finally:
            http.close()

    def sample_series(self, reader: RunReader, paths: Sequence[str], max_points: int
                      ) -> dict[str, tuple[list[float], list[float | None]]]:
        from migrate_core.api import RunReport

        from .readback import sample_series

        ctx = RunContext(RunReport(), threading.Event())
        http = self.transport(ctx)
        try:
            return sample_series(self, http, reader, ctx, paths, max_points)
        finally:
            http.close()
