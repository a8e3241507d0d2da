"""Concurrent writers lose nothing: 8 processes × 50 runs into one catalog, SQLite and PostgreSQL.

This is the scale-out promise of the SLURM executor and the nightly matrix: many jobs finish at
once and each stores its run into the same catalog. SQLite must serialize them (WAL + busy
timeout + immediate write transactions) rather than fail with "database is locked"; PostgreSQL
must take them as they come.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from catalog.db import reset_engines, session_scope
from catalog.models import ClaimResult, Measurement, Run

WORKERS = 8
RUNS_EACH = 50


def _spawn_writers(monkeypatch: pytest.MonkeyPatch, url: str) -> list[int]:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import concurrency_worker

    ctx = multiprocessing.get_context("spawn")
    processes = [
        ctx.Process(target=concurrency_worker.record_runs, args=(url, worker, RUNS_EACH))
        for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=600)
    codes = [p.exitcode for p in processes]
    for process in processes:
        if process.is_alive():
            process.kill()
    return codes


@pytest.mark.slow
def test_concurrent_writers_store_every_run(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """8 × 50 runs, each in its own transaction, starting on a catalog nobody migrated yet: the
    writers also race to create the schema (serialized by `catalog.db`'s migration lock)."""
    reset_engines()
    codes = _spawn_writers(monkeypatch, db_url)
    assert codes == [0] * WORKERS, f"writer exit codes {codes} (tracebacks above)"
    with session_scope(db_url) as session:
        runs = session.exec(select(func.count()).select_from(Run)).one()
        measurements = session.exec(select(func.count()).select_from(Measurement)).one()
        claims = session.exec(select(func.count()).select_from(ClaimResult)).one()
        ids = set(session.exec(select(Run.id)))
    assert runs == WORKERS * RUNS_EACH == 400
    assert measurements == 400 * 6 and claims == 400
    expected = {
        f"20260101T000000Z-tiny{w % 3}-smoke-w{w}i{i:03d}"
        for w in range(WORKERS)
        for i in range(RUNS_EACH)
    }
    assert ids == expected
