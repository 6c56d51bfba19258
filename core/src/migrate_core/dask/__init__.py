"""`--executor dask`: the runs of a command as tasks on a Dask cluster (the `dask` extra: `distributed`).

`--dask-address tcp://HOST:PORT` (or `[executor] address`) joins a running scheduler; without it a LocalCluster
of min(--workers, cores) single-threaded worker processes runs on this machine for the command's duration.
Dask's own executor (`Client.get_executor`) hands back concurrent.futures Futures, so the orchestrator waits on
them exactly as on its thread pools.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Executor as PoolExecutor
from typing import Any

from distributed import Client, LocalCluster

from ..errors import MigrateError
from ..executors import RemoteExecutor, WorkerSpec


class DaskExecutor(RemoteExecutor):
    name = "dask"

    def __init__(self, spec: WorkerSpec, address: str | None) -> None:
        super().__init__(spec)
        self.address = address
        self.client: Any = None
        self.cluster: Any = None

    def make_pool(self, workers: int) -> PoolExecutor:
        # Dask logs every connection at info: keep its warnings, unless the user asked for debug
        if self.spec.log_level != "debug":
            logging.getLogger("distributed").setLevel(logging.WARNING)
        if self.address:
            try:
                # waits distributed.comm.timeouts.connect (30 s; DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT)
                self.client = Client(self.address)
            except (OSError, TimeoutError) as exc:
                raise MigrateError(f"cannot reach the Dask scheduler at {self.address}: {exc} (start one with "
                                   "`dask scheduler`, or drop --dask-address to run a local cluster)") from None
        else:
            # a dashboard on a free port (not 8787, which another cluster may hold)
            self.cluster = LocalCluster(n_workers=min(workers, os.cpu_count() or 1), threads_per_worker=1,
                                        processes=True, dashboard_address=":0", silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        return self.client.get_executor(pure=False)

    def shutdown(self) -> None:
        super().shutdown()
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
