"""Runs: the `summary.json` record a run directory ends with, its validation, and its storage.

A run directory `runs/<slug>/<run-id>/` holds the executed notebook, `results.json` (what the notebook
recorded), figures, and `summary.json`, written by the runner after comparing the results with
`expected.csv` and evaluating the claims. `summary.json` is the whole record of a run: the database
row is derived from it (`store_run`), locally by the runner and on the nightly's ingest job by
`catalog ingest-runs`, so both paths store identical rows.

summary.json (schema_version 1); times are ISO 8601 with a timezone, numbers are JSON numbers:

    {
      "schema_version": 1,
      "run_id": "20261121T050102Z-fgsm-small-1a2b3c",   # unique; also the folder name
      "slug": "fgsm", "scale": "small",                  # scale after `auto` is resolved
      "status": "succeeded" | "failed" | "interrupted",   # interrupted: SIGINT/SIGTERM
      "seed": 0,                                          # 0 <= seed <= 2**63 - 1 (int64)
      "parameters": {...},                                # the notebook's parameters cell values
      "started_at": "...", "finished_at": "...", "wall_seconds": 123.4,
      "provenance": {"git_commit": "...", "git_dirty": false, "device": "cpu" | "NVIDIA H100 80GB HBM3",
                     "host": "...", "python": "3.11.7", "torch": "2.9.0", "torchvision": "0.24.0",
                     "cuda": null | "12.8", "executor": "local" | "slurm" | ...},
      "run_key": null | "sha256...",                      # skip-unchanged key (nightly)
      "reused_from": null | "<run id>",
      "notebook": "reproduce.ipynb",                      # relative to the run directory
      "error": null | "traceback text",
      "rows": [{"id": "...", "value": 12.3 | null, "paper": 10.0 | null, "tolerance": 2.0 | null,
                "delta": 2.3 | null, "verdict": "match" | "deviates" | "not_compared" | "not_run",
                "reason": null | "why not run / why not compared"}],
      "metrics": [{"name": "...", "value": 1.0}],
      "claims": [{"id": "...", "text": "...", "holds": true | false | null, "detail": "..."}],
      "figures": [{"path": "figures/x.png", "caption": "..."}]
    }
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from catalog import CatalogError, schema
from catalog.models import ClaimResult, Measurement, Run, RunArtifact

SCHEMA_VERSION = schema.SUMMARY_SCHEMA_VERSION
SEED_MAX = 2**63 - 1  # Run.seed is a signed 64-bit column on both backends


def check_seed(seed: Any, where: str = "seed") -> int | None:
    """`seed` when it is None or an integer in [0, 2**63 - 1]; a `CatalogError` otherwise.

    Checked before anything is stored: a larger seed overflows the 64-bit column (SQLite and
    PostgreSQL alike) and would otherwise fail the whole transaction it is part of.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise CatalogError(f"{where}: {seed!r} is not an integer")
    if not 0 <= seed <= SEED_MAX:
        raise CatalogError(f"{where}: {seed} is outside [0, 2**63 - 1] (a 64-bit seed)")
    return seed


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{where}: {value!r} is not an ISO 8601 time") from exc


def validate_summary(summary: Any, source: str = "summary.json") -> dict[str, Any]:
    """Check a summary against its schema (`catalog.schema.RunSummary`); a `CatalogError` naming
    `source` and the field otherwise. The seed must fit the 64-bit column (`check_seed`)."""
    summary = schema.validate_summary(summary, source)
    check_seed(summary.get("seed"), f"{source}: seed")
    return summary


def load_summary(run_dir: Path) -> dict[str, Any]:
    """Read and validate `run_dir/summary.json`."""
    path = run_dir / "summary.json"
    if not path.is_file():
        raise CatalogError(f"{path}: no summary.json (not a run directory?)")
    return validate_summary(schema.read_json(path), str(path))


def store_run(session: Session, summary: dict[str, Any], run_dir: str | None = None) -> Run:
    """Insert (or replace) the run described by a validated summary, in the caller's transaction.

    Storing the same summary twice leaves one identical row: ingest is idempotent.
    """
    summary = validate_summary(summary)
    existing = session.get(Run, summary["run_id"])
    if existing is not None:
        session.delete(existing)
        session.flush()
    prov = summary.get("provenance") or {}
    run = Run(
        id=summary["run_id"],
        slug=summary["slug"],
        scale=summary["scale"],
        status=summary["status"],
        seed=summary.get("seed"),
        parameters=summary.get("parameters") or {},
        started_at=_time(summary.get("started_at"), "started_at"),
        finished_at=_time(summary.get("finished_at"), "finished_at"),
        wall_seconds=summary.get("wall_seconds"),
        git_commit=prov.get("git_commit"),
        git_dirty=prov.get("git_dirty"),
        device=prov.get("device"),
        host=prov.get("host"),
        python_version=prov.get("python"),
        torch_version=prov.get("torch"),
        torchvision_version=prov.get("torchvision"),
        cuda_version=prov.get("cuda"),
        executor=prov.get("executor"),
        run_key=summary.get("run_key"),
        reused_from=summary.get("reused_from"),
        run_dir=run_dir,
        notebook_path=summary.get("notebook"),
        error=summary.get("error"),
        summary=summary,
    )
    run.measurements = [
        Measurement(
            row_id=row["id"],
            value=row.get("value"),
            paper_value=row.get("paper"),
            tolerance=row.get("tolerance"),
            delta=row.get("delta"),
            verdict=row["verdict"],
            reason=row.get("reason"),
        )
        for row in summary.get("rows", [])
    ] + [
        Measurement(name=m["name"], value=m.get("value"), verdict="measured")
        for m in summary.get("metrics", [])
    ]
    run.claims = [
        ClaimResult(
            claim_id=c["id"],
            text=c.get("text") or c["id"],
            holds=c.get("holds"),
            detail=c.get("detail"),
        )
        for c in summary.get("claims", [])
    ]
    run.artifacts = [
        RunArtifact(kind="figure", path=f["path"], caption=f.get("caption"))
        for f in summary.get("figures", [])
    ]
    if summary.get("notebook"):
        run.artifacts.append(RunArtifact(kind="notebook", path=summary["notebook"]))
    session.add(run)
    session.flush()
    return run


def latest_runs(
    session: Session, slug: str, scale: str | None = None, limit: int = 20
) -> list[Run]:
    """The newest runs of a reproduction (optionally of one scale), newest first."""
    query = select(Run).where(Run.slug == slug)
    if scale is not None:
        query = query.where(Run.scale == scale)
    query = query.order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
    return list(session.exec(query))
