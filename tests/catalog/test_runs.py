"""The run record: summary.json validation and storage (the runner and ingest-runs both use it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from catalog import CatalogError
from catalog.db import session_scope
from catalog.models import ClaimResult, Measurement, Run, RunArtifact
from catalog.runs import latest_runs, load_summary, store_run, validate_summary


def summary(run_id: str = "20261121T050000Z-fgsm-small-aaaaaa", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema_version": 1,
        "run_id": run_id,
        "slug": "fgsm",
        "scale": "small",
        "status": "succeeded",
        "seed": 0,
        "parameters": {"scale": "small", "device": "cpu", "seed": 0},
        "started_at": "2026-11-21T05:00:00+00:00",
        "finished_at": "2026-11-21T05:05:00+00:00",
        "wall_seconds": 300.0,
        "provenance": {
            "git_commit": "abc123",
            "git_dirty": False,
            "device": "cpu",
            "python": "3.11.7",
            "torch": "2.9.0",
            "executor": "local",
        },
        "notebook": "reproduce.ipynb",
        "error": None,
        "rows": [
            {
                "id": "err_fgsm",
                "value": 91.0,
                "paper": 89.4,
                "tolerance": 3.0,
                "delta": 1.6,
                "verdict": "not_compared",
                "reason": "reduced scale",
            },
            {
                "id": "cifar",
                "value": None,
                "paper": 10.0,
                "tolerance": 1.0,
                "delta": None,
                "verdict": "not_run",
                "reason": "CIFAR-10 is not available offline",
            },
        ],
        "metrics": [{"name": "train_seconds", "value": 12.5}],
        "claims": [{"id": "fools", "text": "FGSM fools", "holds": True, "detail": "91% > 50%"}],
        "figures": [{"path": "figures/adv.png", "caption": "examples"}],
    }
    base.update(changes)
    return base


def test_store_run_round_trip(db_url: str) -> None:
    with session_scope() as session:
        store_run(session, summary(), run_dir="runs/fgsm/x")
    with session_scope() as session:
        run = session.get(Run, "20261121T050000Z-fgsm-small-aaaaaa")
        assert run is not None and run.device == "cpu" and run.git_dirty is False
        assert run.started_at is not None and run.wall_seconds == 300.0
        rows = {m.row_id: m for m in run.measurements if m.row_id}
        assert rows["err_fgsm"].value == 91.0 and rows["err_fgsm"].verdict == "not_compared"
        assert rows["cifar"].value is None and "CIFAR" in (rows["cifar"].reason or "")
        assert [m.name for m in run.measurements if m.name] == ["train_seconds"]
        assert [(c.claim_id, c.holds) for c in run.claims] == [("fools", True)]
        assert {a.kind for a in run.artifacts} == {"figure", "notebook"}


def test_storing_twice_is_idempotent(db_url: str) -> None:
    for _ in range(2):
        with session_scope() as session:
            store_run(session, summary())
    with session_scope() as session:
        assert len(session.exec(select(Run)).all()) == 1
        assert len(session.exec(select(Measurement)).all()) == 3
        assert len(session.exec(select(ClaimResult)).all()) == 1
        assert len(session.exec(select(RunArtifact)).all()) == 2


def test_latest_runs_newest_first(db_url: str) -> None:
    with session_scope() as session:
        store_run(session, summary("a", started_at="2026-11-20T00:00:00+00:00"))
        store_run(session, summary("b", started_at="2026-11-21T00:00:00+00:00"))
        store_run(session, summary("c", scale="smoke", started_at="2026-11-22T00:00:00+00:00"))
    with session_scope() as session:
        assert [r.id for r in latest_runs(session, "fgsm", "small")] == ["b", "a"]
        assert [r.id for r in latest_runs(session, "fgsm")] == ["c", "b", "a"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"status": "great"}, "status"),
        ({"slug": None}, "'slug'"),
        ({"rows": [{"id": "r", "value": "12", "verdict": "match"}]}, r"rows\[0\] \(r\)\.value"),
        ({"rows": [{"id": "r", "value": float("nan"), "verdict": "match"}]}, "finite"),
        ({"rows": [{"id": "r", "verdict": "meh"}]}, "verdict"),
        ({"claims": [{"id": "c", "holds": "yes"}]}, "holds"),
        ({"started_at": "yesterday"}, "ISO 8601"),
    ],
)
def test_invalid_summaries_name_the_field(change: dict[str, Any], message: str) -> None:
    bad = copy.deepcopy(summary())
    bad.update(change)
    with pytest.raises(CatalogError, match=message):
        validate_summary(bad, "x/summary.json")


def test_load_summary_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text('{\n "schema_version": 1,\n oops\n}')
    with pytest.raises(CatalogError, match=r"summary\.json:3: malformed JSON"):
        load_summary(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps(summary()))
    assert load_summary(tmp_path)["slug"] == "fgsm"
