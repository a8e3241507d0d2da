"""Worker for test_concurrency: one process recording runs into a shared catalog.

A module of its own (not the test module) because spawned processes import their target by module
name, and pytest's importlib mode does not make test modules importable by name.
"""

from __future__ import annotations

import sys
import traceback


def synthetic_summary(worker: int, index: int) -> dict:
    """A complete summary.json record, distinct per (worker, index), as a GPU job would write."""
    slug = f"tiny{worker % 3}"
    return {
        "schema_version": 1,
        "run_id": f"20260101T000000Z-{slug}-smoke-w{worker}i{index:03d}",
        "slug": slug,
        "scale": "smoke",
        "status": "succeeded",
        "seed": index,
        "parameters": {"scale": "smoke", "seed": index},
        "started_at": f"2026-01-01T00:{worker:02d}:{index % 60:02d}+00:00",
        "finished_at": f"2026-01-01T00:{worker:02d}:{index % 60:02d}+00:00",
        "wall_seconds": 1.0,
        "provenance": {"executor": "slurm", "host": f"node{worker}"},
        "run_key": f"sha256:{worker:032x}{index:032x}",
        "rows": [
            {"id": f"row{j}", "value": float(index + j), "verdict": "not_compared"}
            for j in range(5)
        ],
        "metrics": [{"name": "wall", "value": 1.0}],
        "claims": [{"id": "c", "text": "claim", "holds": True, "detail": "ok"}],
        "figures": [],
    }


def record_runs(url: str, worker: int, count: int) -> None:
    """Store `count` runs, one transaction each, as `repro run` and the executors do (the run, then
    the drift markers of its reproduction, which rewrites other runs of the same slug); exit 1 on
    error."""
    try:
        from catalog.db import session_scope
        from catalog.drift import mark_changes
        from catalog.runs import store_run

        for index in range(count):
            summary = synthetic_summary(worker, index)
            with session_scope(url) as session:
                store_run(session, summary, run_dir=None)
                mark_changes(session, {(summary["slug"], summary["scale"])})
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
