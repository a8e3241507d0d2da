"""`catalog ingest-runs DIR`: GPU artifacts into the catalog — good ones stored, bad ones named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from catalog import CatalogError
from catalog.cli import app
from catalog.db import session_scope
from catalog.ingest_runs import find_run_dirs, ingest_runs
from catalog.models import Measurement, Run

from .conftest import summary


def write_run(base: Path, record: dict[str, Any] | str, *, figure: bool = False) -> Path:
    """A run directory as `repro run --no-store` leaves it (summary.json, results.json, figure)."""
    run_id = record["run_id"] if isinstance(record, dict) else "broken"
    run_dir = base / run_id
    run_dir.mkdir(parents=True)
    text = record if isinstance(record, str) else json.dumps(record)
    (run_dir / "summary.json").write_text(text, encoding="utf-8")
    (run_dir / "results.json").write_text('{"schema_version": 1, "rows": []}', encoding="utf-8")
    if figure:
        (run_dir / "figures").mkdir()
        (run_dir / "figures" / "f.png").write_bytes(b"\x89PNG fake")
    return run_dir


@pytest.fixture
def incoming(tmp_path: Path) -> Path:
    """Two good artifacts in the download layout DIR/run-<slug>/<run-id>/, plus malformed ones."""
    root = tmp_path / "incoming"
    good = summary(
        "r1-tinyfake", figures=[{"path": "figures/f.png", "caption": "c"}], notebook=None
    )
    write_run(root / "run-tinyfake", good, figure=True)
    write_run(root / "run-tinyfake_other", summary("r2-other", slug="tinyfake_other"))
    bad = root / "run-broken"
    write_run(bad / "json", "{ not json")
    write_run(bad / "field", summary("r3-bad-verdict", rows=[{"id": "x", "verdict": "great"}]))
    write_run(
        bad / "escape",
        summary("r4-escape", figures=[{"path": "../../../etc/passwd", "caption": "x"}]),
    )
    write_run(bad / "slug", summary("r5-slug", slug="../evil"))
    results = write_run(bad / "results", summary("r6-results"))
    (results / "results.json").write_text("[1, 2")
    return root


def test_finds_run_directories_in_every_layout(tmp_path: Path) -> None:
    write_run(tmp_path / "a" / "run-x", summary("r1"))  # downloaded artifacts
    write_run(tmp_path / "a" / "tinyfake", summary("r2"))  # a local runs/ folder
    (tmp_path / "a" / "tinyfake" / "r2" / "figures").mkdir()
    assert [p.name for p in find_run_dirs(tmp_path / "a")] == ["r1", "r2"]
    assert find_run_dirs(write_run(tmp_path / "b", summary("r3"))) == [tmp_path / "b" / "r3"]


def test_good_runs_are_stored_and_malformed_ones_rejected(
    tiny_project: Path, incoming: Path
) -> None:
    with session_scope() as session:
        report = ingest_runs(session, incoming)
    assert sorted(report.stored) == ["r1-tinyfake", "r2-other"]
    reasons = sorted(r.reason for r in report.rejected)
    assert len(reasons) == 5
    assert any("json/broken/summary.json" in r and "malformed JSON" in r for r in reasons)
    assert any("r3-bad-verdict" in r or "verdict 'great' unknown" in r for r in reasons)
    assert any("points outside the run directory" in r for r in reasons)
    assert any("'../evil' is not usable as a folder name" in r for r in reasons)
    assert any("results.json: malformed JSON" in r for r in reasons)
    with session_scope() as session:
        runs = {r.id: r for r in session.exec(select(Run))}
    assert sorted(runs) == ["r1-tinyfake", "r2-other"]
    copied = tiny_project / "runs" / "tinyfake" / "r1-tinyfake"
    assert (copied / "figures" / "f.png").read_bytes() == b"\x89PNG fake"
    assert runs["r1-tinyfake"].run_dir == "runs/tinyfake/r1-tinyfake"  # relative to the project
    assert runs["r1-tinyfake"].summary["changed"] is False  # drift markers computed (first run)


def test_ingest_is_idempotent(tiny_project: Path, incoming: Path) -> None:
    with session_scope() as session:
        ingest_runs(session, incoming)
    with session_scope() as session:
        before = session.exec(select(func.count()).select_from(Measurement)).one()
        report = ingest_runs(session, incoming)
    assert report.stored == [] and sorted(report.unchanged) == ["r1-tinyfake", "r2-other"]
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(Run)).one() == 2
        assert session.exec(select(func.count()).select_from(Measurement)).one() == before
    # ingesting the copies (runs/ itself) is also a no-op, files are not copied onto themselves
    with session_scope() as session:
        report = ingest_runs(session, tiny_project / "runs")
    assert report.stored == [] and len(report.unchanged) == 2 and not report.rejected


def test_a_changed_artifact_replaces_the_stored_run(tiny_project: Path, tmp_path: Path) -> None:
    write_run(tmp_path / "in1", summary("r1", value=10.0))
    write_run(tmp_path / "in2", summary("r1", value=12.0))
    with session_scope() as session:
        ingest_runs(session, tmp_path / "in1")
    with session_scope() as session:
        report = ingest_runs(session, tmp_path / "in2")
        assert report.stored == ["r1"]
        run = session.get(Run, "r1")
        assert run is not None and run.summary["rows"][0]["value"] == 12.0


def test_same_run_twice_with_different_content_is_rejected(
    tiny_project: Path, tmp_path: Path
) -> None:
    write_run(tmp_path / "in" / "a", summary("r1", value=10.0))
    write_run(tmp_path / "in" / "b", summary("r1", value=11.0))
    with session_scope() as session:
        report = ingest_runs(session, tmp_path / "in")
    assert report.stored == ["r1"]
    assert len(report.rejected) == 1 and "with different content" in report.rejected[0].reason


def test_missing_folder_is_one_clear_error(tiny_project: Path, tmp_path: Path) -> None:
    with session_scope() as session, pytest.raises(CatalogError, match="no such folder"):
        ingest_runs(session, tmp_path / "nope")


def test_no_copy_stores_directories_where_they_are(tiny_project: Path, tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "in", summary("r1"))
    with session_scope() as session:
        ingest_runs(session, tmp_path / "in", copy=False)
        run = session.get(Run, "r1")
        assert run is not None and run.run_dir == str(run_dir.resolve())
    assert not (tiny_project / "runs").exists()


def test_cli_exits_1_on_rejections_but_stores_the_rest(tiny_project: Path, incoming: Path) -> None:
    result = CliRunner().invoke(app, ["ingest-runs", str(incoming)])
    assert result.exit_code == 1, result.output
    assert (
        "rejected:" in result.output and "2 stored, 0 already stored, 5 rejected" in result.output
    )
    again = CliRunner().invoke(app, ["ingest-runs", str(incoming / "run-tinyfake")])
    assert again.exit_code == 0, again.output
    assert "0 stored, 1 already stored, 0 rejected" in again.output
    missing = CliRunner().invoke(app, ["ingest-runs", str(incoming / "nope")])
    assert missing.exit_code == 1 and "no such folder" in missing.output


def test_a_reused_run_from_a_gpu_runner_gets_the_original_files(
    tiny_project: Path, tmp_path: Path
) -> None:
    original = summary(
        "r1-orig", notebook="reproduce.ipynb", figures=[{"path": "figures/f.png", "caption": "c"}]
    )
    kept = write_run(tiny_project / "runs" / "tinyfake", original, figure=True)
    (kept / "reproduce.ipynb").write_text("{}")
    with session_scope() as session:
        ingest_runs(session, tiny_project / "runs")
    reused = {**original, "run_id": "r2-reused", "reused_from": "r1-orig"}
    arrived = tmp_path / "incoming" / "run-tinyfake" / "r2-reused"
    arrived.mkdir(parents=True)
    (arrived / "summary.json").write_text(json.dumps(reused))  # summary only, as uploaded
    with session_scope() as session:
        report = ingest_runs(session, tmp_path / "incoming")
    assert report.stored == ["r2-reused"]
    copy = tiny_project / "runs" / "tinyfake" / "r2-reused"
    assert (copy / "figures" / "f.png").read_bytes() == b"\x89PNG fake"
    assert (copy / "reproduce.ipynb").read_text() == "{}" and (copy / "results.json").is_file()
