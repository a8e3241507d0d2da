"""Drift: two recorded runs that differ → the report, `catalog runs --changed`, the site's markers;
a claim that held and now fails → a regression, and the nightly's exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.cli import app
from catalog.db import session_scope
from catalog.drift import (
    DEFAULT_RELATIVE_TOLERANCE,
    compare_summaries,
    drift_for_run,
    mark_changes,
    run_listing,
    strip_markers,
)
from catalog.models import ExpectedResult, Paper, Reproduction, Run
from catalog.runs import store_run

from .conftest import summary, write_reproduction

T0, T1, T2 = (f"2026-01-0{d}T02:00:00+00:00" for d in (1, 2, 3))


def changes_of(new: dict, old: dict) -> dict[str, tuple[str, bool]]:
    return {f"{c.kind}:{c.id}": (c.what, c.regression) for c in compare_summaries(new, old)}


# --------------------------------------------------------------------------- pure comparison


def test_identical_runs_have_no_changes() -> None:
    assert compare_summaries(summary("b"), summary("a")) == []


def test_value_within_tolerance_is_not_a_change_beyond_it_is() -> None:
    assert changes_of(summary("b", value=10.9), summary("a", value=10.0)) == {}
    changed = compare_summaries(summary("b", value=11.5), summary("a", value=10.0))
    assert [(c.id, c.what, c.before, c.after) for c in changed] == [
        ("tiny_error", "value", 10.0, 11.5)
    ]
    assert "more than tolerance 1" in changed[0].detail and not changed[0].regression


def test_rows_without_tolerance_use_the_default_relative_tolerance() -> None:
    def with_seconds(run_id: str, value: float) -> dict:
        record = summary(run_id)
        record["rows"].append({"id": "secs", "value": value, "verdict": "not_compared"})
        return record

    assert DEFAULT_RELATIVE_TOLERANCE == 0.05
    assert changes_of(with_seconds("b", 104.0), with_seconds("a", 100.0)) == {}
    changed = compare_summaries(with_seconds("b", 106.0), with_seconds("a", 100.0))
    assert [c.id for c in changed] == ["secs"] and "default 5% relative" in changed[0].detail


def test_a_flipped_verdict_is_a_change() -> None:
    old = summary("a", value=10.5, verdict="match")
    new = summary("b", value=10.5, verdict="deviates")
    assert changes_of(new, old) == {"row:tiny_error": ("verdict", False)}
    gone = summary("c", value=None, verdict="not_run")
    assert changes_of(gone, old) == {"row:tiny_error": ("verdict", False)}


def test_claim_held_then_fails_is_a_regression_other_flips_are_not() -> None:
    assert changes_of(summary("b", holds=False), summary("a", holds=True)) == {
        "claim:low_error": ("holds", True)
    }
    assert changes_of(summary("b", holds=None), summary("a", holds=True)) == {
        "claim:low_error": ("holds", False)
    }
    assert changes_of(summary("b", holds=True), summary("a", holds=False)) == {
        "claim:low_error": ("holds", False)
    }


def test_added_and_removed_rows_and_claims_are_changes() -> None:
    old = summary("a")
    new = summary("b", claims=[{"id": "new_claim", "text": "t", "holds": True}])
    new["rows"] = new["rows"][:1]
    assert changes_of(new, old) == {
        "row:tiny_cifar": ("removed", False),
        "claim:new_claim": ("added", False),
        "claim:low_error": ("removed", False),
    }


# --------------------------------------------------------------------------- recorded runs


def store(*records: dict) -> None:
    with session_scope() as session:
        for record in records:
            store_run(session, record)
        mark_changes(session)


def test_two_recorded_runs_that_differ(db_url: str) -> None:
    store(
        summary("r1", started=T0, value=10.0),
        summary("r2", started=T1, value=14.0, verdict="not_compared", holds=False),
        summary("x1", slug="tinyfake_other", started=T0),
        summary("x2", slug="tinyfake_other", started=T1),
    )
    with session_scope() as session:
        run = session.get(Run, "r2")
        assert run is not None
        drift = drift_for_run(session, run)
        assert drift.base_run_id == "r1"
        assert {(c.kind, c.id, c.what) for c in drift.changes} == {
            ("row", "tiny_error", "value"),
            ("claim", "low_error", "holds"),
        }
        assert [c.id for c in drift.regressions] == ["low_error"]
        first = session.get(Run, "r1")
        assert first is not None and drift_for_run(session, first).base_run_id is None
        changed = run_listing(session, changed=True)
    assert [item["run_id"] for item in changed] == ["r2"]  # x2 changed nothing
    assert changed[0]["drift"]["regressions"] == 1


def test_base_is_the_previous_successful_run(db_url: str) -> None:
    """held → crash → fails: still a regression (the crash hides nothing)."""
    store(
        summary("r1", started=T0, holds=True),
        summary("r2", started=T1, status="failed", value=None, verdict="not_run", holds=None),
        summary("r3", started=T2, holds=False),
    )
    with session_scope() as session:
        crash = drift_for_run(session, session.get(Run, "r2"))
        assert any(c.kind == "status" and "boom" in c.detail for c in crash.changes)
        assert crash.regressions == []
        drift = drift_for_run(session, session.get(Run, "r3"))
    assert drift.base_run_id == "r1"
    assert [c.id for c in drift.regressions] == ["low_error"]
    assert ("status", "failed", "succeeded") in {(c.kind, c.before, c.after) for c in drift.changes}


def test_out_of_order_ingest_keeps_markers_right(db_url: str) -> None:
    store(summary("r1", started=T0, value=10.0), summary("r3", started=T2, value=20.0))
    with session_scope() as session:
        assert session.get(Run, "r3").summary["drift_base"] == "r1"
    store(summary("r2", started=T1, value=20.0))  # ran between them, ingested last
    with session_scope() as session:
        r3 = session.get(Run, "r3").summary
        r2 = session.get(Run, "r2").summary
    assert r3["drift_base"] == "r2" and r3["changed"] is False
    assert r2["changed"] is True and r2["rows"][0]["changed"] is True
    assert "10 → 20" in r2["rows"][0]["change"]
    assert strip_markers(r2) == summary("r2", started=T1, value=20.0)


def test_catalog_runs_cli(db_url: str) -> None:
    store(summary("r1", started=T0), summary("r2", started=T1, value=30.0, holds=False))
    runner = CliRunner()
    listed = runner.invoke(app, ["runs", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["run_id"] for r in json.loads(listed.output)] == ["r2", "r1"]
    changed = runner.invoke(app, ["runs", "--changed"])
    assert changed.exit_code == 0, changed.output
    assert "tinyfake (smoke) r2" in changed.output and "REGRESSION: holds → fails" in changed.output
    assert "value 10 → 30" in changed.output
    failing = runner.invoke(app, ["runs", "--changed", "--fail-on-regression"])
    assert failing.exit_code == 1
    other = runner.invoke(app, ["runs", "--slug", "tinyfake_other", "--changed"])
    assert other.exit_code == 0 and "no run changed anything" in other.output


def test_site_marks_the_changed_rows_and_runs(db_url: str, tmp_path: Path) -> None:
    from sitebuilder import publish

    with session_scope() as session:
        session.add(
            Paper(key="2099_Fake_A_arxiv_tf", title="A Tiny Fake Paper", year=2099, bibtex="@x")
        )
        session.flush()
        session.add(
            Reproduction(slug="tinyfake", paper_key="2099_Fake_A_arxiv_tf", path="repro/tinyfake")
        )
        session.flush()
        for position, row_id in enumerate(("tiny_error", "tiny_cifar")):
            session.add(
                ExpectedResult(
                    slug="tinyfake",
                    row_id=row_id,
                    position=position,
                    source="Table 1",
                    dataset="mnist",
                    metric="error_pct",
                    paper_value=10.0,
                    tolerance=1.0,
                )
            )
    store(summary("r1", started=T0, value=10.0), summary("r2", started=T1, value=14.0))
    with session_scope() as session:
        publish(session, tmp_path / "site", runs_dir=tmp_path / "runs", root=tmp_path)
    page = (tmp_path / "site" / "papers" / "2099_Fake_A_arxiv_tf.html").read_text()
    badge = 'class="badge changed"'
    error_row = next(line for line in page.splitlines() if ">tiny" in line and "error" in line)
    cifar_row = next(line for line in page.splitlines() if ">tiny" in line and "cifar" in line)
    assert badge in error_row and badge not in cifar_row
    runs_page = (tmp_path / "site" / "runs.html").read_text()
    lines = [line for line in runs_page.splitlines() if "run-row-" in line]
    assert len(lines) == 2 and sum(badge in line for line in lines) == 1


@pytest.mark.slow
def test_claim_regression_makes_the_nightly_exit_1(tiny_project: Path) -> None:
    from repro.nightly import main

    args = ["--scale", "smoke", "--device", "cpu", "--only", "tinyfake", "--no-site", "--quiet"]
    assert main(args) == 0
    write_reproduction(tiny_project, "tinyfake", value=12.5)  # moved, claim still holds
    assert main(args) == 0
    write_reproduction(tiny_project, "tinyfake", value=80.0)  # the claim (error < 50) now fails
    report = tiny_project / "report.json"
    assert main([*args, "--json", str(report)]) == 1
    entry = json.loads(report.read_text())["entries"][0]
    assert entry["status"] == "succeeded" and entry["regressions"] == 1
    assert {c["id"] for c in entry["changes"]} == {"tiny_error", "low_error"}
    assert main(args) == 0  # reused: fails as before, no new regression
