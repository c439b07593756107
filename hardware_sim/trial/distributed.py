"""Population-scale trials on dask.distributed.

The rows of a trial (subject x seed) are split into chunks; each chunk is one task running
:func:`hardware_sim.trial.engine.run_rows`. Every row draws its random numbers from streams derived from
(seed, subject name, replicate, component) only (:mod:`hardware_sim.random_streams`), never from a stream
shared with other rows, so the chunk a row lands in and the worker that runs it change nothing: the results
are identical, number for number, to :func:`hardware_sim.trial.engine.run_trial` in one process.

dask is an optional dependency (``pip install 'glucotwin[cluster]'``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from hardware_sim.patient.cohort import Cohort
from hardware_sim.trial.arms import make_arm
from hardware_sim.trial.engine import (
    DEFAULT_CHUNK_ROWS,
    Progress,
    RowResults,
    TrialConfig,
    TrialConfigError,
    TrialResult,
    TrialRows,
    chunk_indices,
    run_rows,
)
from hardware_sim.trial.observation import Arm


class DaskUnavailableError(RuntimeError):
    """dask.distributed is not installed (install the ``cluster`` extra)."""


def _client(scheduler_address: str | None, n_workers: int):
    from dask.distributed import Client, LocalCluster

    if scheduler_address:
        return Client(scheduler_address), None
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster


def run_trial_distributed(
    arms: Sequence[Arm | str],
    cohort: Cohort,
    config: TrialConfig,
    *,
    scheduler_address: str | None = None,
    n_workers: int = 2,
    chunk_size: int | None = None,
    progress: Progress | None = None,
    cohort_label: str = "custom",
) -> TrialResult:
    """Like :func:`run_trial`, with chunks of rows run as dask tasks.

    ``scheduler_address``: a running scheduler ("tcp://host:8786"); None starts a LocalCluster of
    ``n_workers`` single-threaded processes for the duration of the call.
    ``chunk_size``: rows per task; default splits the rows into about 2 tasks per worker.
    """
    try:
        from dask.distributed import as_completed
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise DaskUnavailableError("dask.distributed is not installed: pip install 'glucotwin[cluster]'") from error

    started = time.perf_counter()
    rows = TrialRows.build(cohort, config.seeds)
    arm_objects = [make_arm(a) if isinstance(a, str) else a for a in arms]
    names = [a.name for a in arm_objects]
    if len(set(names)) != len(names):
        raise TrialConfigError(f"arm names must be unique, got {names}")
    client, cluster = _client(scheduler_address, n_workers)
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})) or n_workers)
        size = chunk_size or min(DEFAULT_CHUNK_ROWS, max(1, math.ceil(len(rows) / (2 * workers))))
        chunks = chunk_indices(len(rows), size)
        futures = {}
        for arm in arm_objects:
            futures[arm.name] = [client.submit(run_rows, arm, rows.take(idx), config, pure=False) for idx in chunks]
        if progress is not None:
            sizes = {f.key: len(idx) for arm_futures in futures.values() for f, idx in zip(arm_futures, chunks)}
            for future in as_completed([f for arm_futures in futures.values() for f in arm_futures]):
                progress(sizes[future.key] * config.n_samples)
        results = {name: RowResults.concatenate(client.gather(arm_futures)) for name, arm_futures in futures.items()}
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return TrialResult(config, cohort_label, results, time.perf_counter() - started)
