"""The SLURM path through submitit, exercised with submitit's local executor: the job runs in its
own process, stores its run into the catalog, and the collector sees the result."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.models import Run
from repro.executors import Job, SubmititExecutor, job_resources, make_executor
from repro.nightly import run_jobs

from .conftest import write_reproduction


def test_resources_come_from_repro_toml(tiny_project_sqlite: Path) -> None:
    assert job_resources("tinyfake", "smoke") == {
        "timeout_min": 12,  # wall_minutes 1 × 2 + 10
        "gpus_per_node": 0,
        "name": "advrepro-tinyfake-smoke",
    }
    full = job_resources("tinyfake", "full")
    assert full["timeout_min"] == 70 and full["gpus_per_node"] == 1  # needs_gpu = true
    write_reproduction(tiny_project_sqlite, "tinyfake_other", extra={"wall_minutes": "soon"})
    assert job_resources("tinyfake_other", "smoke")["timeout_min"] == 60  # the default


def test_slurm_auto_scale_is_full_and_gpu_jobs_are_keyed_as_cuda(
    tiny_project_sqlite: Path,
) -> None:
    slurm = SubmititExecutor(tiny_project_sqlite / "submitit", cluster="slurm")
    assert slurm.resolve_scale("auto", "auto") == "full"
    assert slurm.device_kind("tinyfake", "full", "auto") == "cuda"
    assert slurm.device_kind("tinyfake", "smoke", "auto") == "cpu"
    assert slurm.device_kind("tinyfake", "full", "cpu") == "cpu"
    local = SubmititExecutor(tiny_project_sqlite / "submitit", cluster="local")
    assert local.resolve_scale("smoke", "cpu") == "smoke" and local.name == "submitit-local"


@pytest.mark.slow
def test_a_submitit_job_runs_the_reproduction_and_lands_in_the_catalog(
    tiny_project: Path, tmp_path: Path
) -> None:
    executor = SubmititExecutor(tmp_path / "submitit", cluster="local", poll_s=0.5)
    broken = Job(slug="tinyfake_other", scale="smoke", seed="x", out=str(tmp_path / "runs"))  # type: ignore[arg-type]
    (died,) = list(executor.run([broken]))  # the job process raises: an error outcome, no run
    assert died.status == "error" and "died" in (died.error or "")
    (outcome,) = run_jobs(
        ["tinyfake"], scale="smoke", device="cpu", executor=executor, reuse=False, progress=False
    )
    assert outcome.status == "succeeded", outcome.error
    assert outcome.stored and outcome.summary is not None
    assert outcome.summary["provenance"]["executor"] == "submitit-local"
    assert Path(outcome.run_dir or "").is_dir()
    with session_scope() as session:
        runs = list(session.exec(select(Run)))
    assert [(r.slug, r.status, r.executor) for r in runs] == [
        ("tinyfake", "succeeded", "submitit-local")
    ]
    assert runs[0].run_key == outcome.summary["run_key"] and runs[0].run_key
    assert list((tmp_path / "submitit").glob("*/*_log.out"))  # submitit's job logs


@pytest.mark.slow
def test_repro_run_executor_slurm(
    tiny_project_sqlite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`repro run SLUG --executor slurm`, with SUBMITIT_CLUSTER=local standing in for SLURM."""
    from repro.cli import app

    monkeypatch.setenv("SUBMITIT_CLUSTER", "local")
    assert make_executor("slurm").name == "submitit-local"
    args = ["run", "tinyfake", "--scale", "smoke", "--device", "cpu", "--executor", "slurm"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "stored in the catalog" in result.output
    reused = CliRunner().invoke(app, [*args, "--reuse"])
    assert reused.exit_code == 0, reused.output
    assert "reused 2" in reused.output  # the run id of the first, a UTC timestamp
    with session_scope() as session:
        runs = list(session.exec(select(Run).order_by(Run.recorded_at)))
    assert [r.reused_from for r in runs] == [None, runs[0].id]
    assert (tiny_project_sqlite / "runs" / ".submitit").is_dir()
