"""Executors: where a reproduction's notebook runs — in this process's machine, or on a cluster.

A `Job` is one reproduction to run (slug, resolved scale, parameters, run key); `execute_job` runs
it wherever it lands (`repro.runner.execute_run`, then storing the run) and returns an `Outcome`.
Executors only decide *where* `execute_job` is called:

- `LocalExecutor`: one job after the other, here. A job that raises is an `error` outcome; the
  others still run.
- `SubmititExecutor`: each job is submitted through submitit (`cluster="slurm"` on a SLURM cluster,
  `"local"` for tests: submitit's local executor runs the job in a subprocess the same way), with
  resources from the reproduction's repro.toml: `timeout_min` = `wall_minutes` of the scale × 2
  + 10 minutes of start-up margin (default 60 minutes when repro.toml gives none),
  `gpus_per_node` = 1 when `needs_gpu` is set for the scale (or at the top level), else 0.
  All jobs are submitted first, then collected.

Storage: a job stores its own run (`store=True`), so with a shared catalog (PostgreSQL through
`DATABASE_URL`, or a SQLite file on a filesystem the nodes share) each job's result is safe as soon
as it ends, and many jobs write concurrently (`tests/nightly/test_concurrency.py`). The collector
then stores any collected run that the job could not store (idempotent: `store_run` replaces a row
with the same run id), so the catalog ends with every run either way. The run directories (`out`)
and submitit's folder must be on a filesystem that the submitting machine and the nodes share.

`auto` scale under SLURM means `full`: the cluster is where the GPUs are; jobs whose full scale
needs a GPU ask for one. With the local executors, `auto` is resolved here (`full` on CUDA).
"""

from __future__ import annotations

import contextlib
import math
import os
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from repro import ReproError

__all__ = [
    "EXECUTORS",
    "Executor",
    "Job",
    "LocalExecutor",
    "Outcome",
    "SubmititExecutor",
    "execute_job",
    "job_resources",
    "make_executor",
]

EXECUTORS = ("local", "slurm")
DEFAULT_TIMEOUT_MIN = 60
TIMEOUT_FACTOR = 2.0
TIMEOUT_MARGIN_MIN = 10


@dataclass
class Job:
    """One reproduction to run. `scale` is concrete (never `auto`); `out` is the runs folder."""

    slug: str
    scale: str
    device: str = "auto"
    seed: int = 0
    data_dir: str | None = None
    out: str | None = None
    run_key: str | None = None
    store: bool = True
    executor: str = "local"
    progress: bool = True


@dataclass
class Outcome:
    """What became of a job (or of a reuse).

    `status`: succeeded | failed (the notebook ran and failed; a run is recorded) | interrupted
    (SIGINT/SIGTERM; recorded) | reused | error (no run exists: the folder was broken, the job
    died, the cluster refused it; `error` says why).
    """

    slug: str
    scale: str
    status: str
    summary: dict[str, Any] | None = None
    run_dir: str | None = None
    error: str | None = None
    stored: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str | None:
        """The recorded run's id (None for an `error` outcome)."""
        return self.summary["run_id"] if self.summary else None


def execute_job(job: Job) -> Outcome:
    """Run one job here (called in-process, or inside a submitit job): execute the notebook, store
    the run when `job.store`. Problems found before the notebook starts are an `error` outcome.
    An interrupted run (SIGINT/SIGTERM) is stored as such, then the interruption propagates."""
    from repro.runner import RunInterrupted, execute_run

    try:
        result = execute_run(
            job.slug,
            scale=job.scale,
            device=job.device,
            seed=job.seed,
            data_dir=job.data_dir,
            out=job.out,
            progress=job.progress,
            executor=job.executor,
            run_key=job.run_key,
        )
    except ReproError as exc:
        return Outcome(job.slug, job.scale, "error", error=str(exc))
    except RunInterrupted as stop:
        if job.store:
            stopped = Outcome(
                job.slug,
                job.scale,
                "interrupted",
                summary=stop.result.summary,
                run_dir=str(stop.result.run_dir),
            )
            # when storing fails, the run directory keeps the whole record (`catalog ingest-runs`)
            with contextlib.suppress(ReproError):
                store_outcome(stopped)
        raise
    outcome = Outcome(
        job.slug,
        job.scale,
        result.status,
        summary=result.summary,
        run_dir=str(result.run_dir),
        warnings=list(result.warnings),
    )
    if job.store:
        try:
            store_outcome(outcome)
        except ReproError as exc:  # the collector retries; the run directory is intact
            outcome.warnings.append(f"{job.slug}: the job could not store its run: {exc}")
    return outcome


def store_outcome(outcome: Outcome) -> None:
    """Store the outcome's run in the catalog and refresh the drift markers of its reproduction."""
    from catalog import CatalogError
    from catalog.db import session_scope
    from catalog.drift import mark_changes
    from catalog.runs import store_run

    if outcome.summary is None:
        return
    try:
        with session_scope() as session:
            store_run(session, outcome.summary, outcome.run_dir)
            mark_changes(session, {(outcome.slug, outcome.summary["scale"])})
    except CatalogError as exc:
        raise ReproError(f"storing run {outcome.run_id}: {exc}") from exc
    outcome.stored = True


def _error_line(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return " ".join(line.strip() for line in lines if line.strip())


class Executor(Protocol):
    """Runs jobs somewhere and yields their outcomes (in any order)."""

    name: str

    def resolve_scale(self, scale: str, device: str) -> str:
        """The concrete scale jobs will run at (`auto` depends on where they run)."""
        ...

    def device_kind(self, job_slug: str, scale: str, device: str) -> str:
        """The kind of device (`cpu` | `cuda`) the job will get, for its run key."""
        ...

    def run(self, jobs: list[Job]) -> Iterator[Outcome]:
        """Execute `jobs`; one failing does not stop the others."""
        ...


def _local_device_kind(device: str) -> str:
    kind = str(device).split(":")[0].strip().lower()
    if kind != "auto":
        return kind
    from repro.env import pick_device

    return pick_device("auto").type


class LocalExecutor:
    """Jobs one after the other, in this process (each notebook has its own kernel process)."""

    name = "local"

    def resolve_scale(self, scale: str, device: str) -> str:
        """`auto` → `full` on CUDA here, else `small`."""
        from repro.scales import resolve_scale

        return resolve_scale(scale, device)

    def device_kind(self, job_slug: str, scale: str, device: str) -> str:
        """What `device` resolves to on this machine."""
        return _local_device_kind(device)

    def run(self, jobs: list[Job]) -> Iterator[Outcome]:
        """Run each job; an unexpected exception becomes that job's `error` outcome."""
        for job in jobs:
            job.executor = self.name
            try:
                yield execute_job(job)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                yield Outcome(job.slug, job.scale, "error", error=_error_line(exc))


def job_resources(slug: str, scale: str) -> dict[str, Any]:
    """submitit's generic resource parameters for `slug` at `scale`, from its repro.toml."""
    from repro.config import load_config

    config = load_config(slug)
    params = config["scales"].get(scale, {})
    wall = params.get("wall_minutes")
    if isinstance(wall, int | float) and not isinstance(wall, bool) and wall > 0:
        timeout = math.ceil(wall * TIMEOUT_FACTOR + TIMEOUT_MARGIN_MIN)
    else:
        timeout = DEFAULT_TIMEOUT_MIN
    # the top-level `needs_gpu` (catalog.schema.ReproConfig) is about `full`; a scale may say its own
    needs_gpu = params.get(
        "needs_gpu", config.get("needs_gpu", False) if scale == "full" else False
    )
    if not isinstance(needs_gpu, bool):
        raise ReproError(f"repro/{slug}/repro.toml: [scales.{scale}] needs_gpu must be true/false")
    return {
        "timeout_min": int(timeout),
        "gpus_per_node": 1 if needs_gpu else 0,
        "name": f"advrepro-{slug}-{scale}",
    }


class SubmititExecutor:
    """Each job as a submitit job: SLURM on a cluster, or submitit's local executor (tests).

    `options` are passed to `update_parameters` for every job (e.g. `slurm_partition`,
    `cpus_per_task`, `mem_gb`); per-job time and GPU requests come from `job_resources`.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        cluster: str = "slurm",
        options: dict[str, Any] | None = None,
        poll_s: float = 5.0,
    ) -> None:
        self.folder = Path(folder)
        self.cluster = cluster
        self.options = dict(options or {})
        self.poll_s = poll_s
        self.name = "slurm" if cluster == "slurm" else f"submitit-{cluster}"

    def resolve_scale(self, scale: str, device: str) -> str:
        """`auto` → `full` on SLURM (jobs get GPUs there), else as the local executor does."""
        if self.cluster == "slurm" and str(scale).strip().lower() == "auto":
            return "full"
        return LocalExecutor().resolve_scale(scale, device)

    def device_kind(self, job_slug: str, scale: str, device: str) -> str:
        """`auto` → `cuda` when the job asks for a GPU, else `cpu`."""
        kind = str(device).split(":")[0].strip().lower()
        if kind != "auto":
            return kind
        return "cuda" if job_resources(job_slug, scale)["gpus_per_node"] else "cpu"

    def _executor(self) -> Any:
        import submitit

        self.folder.mkdir(parents=True, exist_ok=True)
        return submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=self.cluster)

    def run(self, jobs: list[Job]) -> Iterator[Outcome]:
        """Submit every job, then collect each result as its job ends."""
        import time

        executor = self._executor()
        pending: list[tuple[Job, Any]] = []
        for job in jobs:
            job.executor = self.name
            job.progress = False  # the notebook's output goes to the job's log file
            try:
                executor.update_parameters(**{**job_resources(job.slug, job.scale), **self.options})
                pending.append((job, executor.submit(execute_job, job)))
            except Exception as exc:
                yield Outcome(job.slug, job.scale, "error", error=f"submission failed: {exc}")
        while pending:
            still = []
            for job, handle in pending:
                if not handle.done():
                    still.append((job, handle))
                    continue
                yield self._collect(job, handle)
            pending = still
            if pending:
                time.sleep(self.poll_s)

    def _collect(self, job: Job, handle: Any) -> Outcome:
        try:
            outcome: Outcome = handle.result()
        except Exception as exc:
            log = _log_tail(handle)
            return Outcome(
                job.slug,
                job.scale,
                "error",
                error=f"job {handle.job_id} died: {_error_line(exc)}" + (f"\n{log}" if log else ""),
            )
        if job.store and outcome.summary is not None and not outcome.stored:
            try:
                store_outcome(outcome)
            except ReproError as exc:
                outcome.warnings.append(str(exc))
        return outcome


def _log_tail(handle: Any, lines: int = 20) -> str:
    try:
        text = handle.stderr() or ""
    except Exception:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def make_executor(name: str, *, folder: Path | str | None = None, **options: Any) -> Executor:
    """`local` or `slurm` (`SUBMITIT_CLUSTER=local` turns `slurm` into submitit's local executor,
    for trying the SLURM path on a laptop). `folder` holds submitit's job files (default
    `<project>/runs/.submitit`)."""
    if name == "local":
        return LocalExecutor()
    if name == "slurm":
        from catalog.config import project_root

        cluster = os.environ.get("SUBMITIT_CLUSTER", "slurm")
        return SubmititExecutor(
            folder or project_root() / "runs" / ".submitit", cluster=cluster, options=options
        )
    raise ReproError(f"--executor {name!r}: unknown; use {' or '.join(EXECUTORS)}")
