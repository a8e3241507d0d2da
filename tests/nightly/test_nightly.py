"""`nox -s nightly -- --scale smoke`, end to end, on a project of tiny fake reproductions.

The nox session is `catalog sync` then `repro nightly ARGS`; these tests do the same (sync
in-process, the nightly through `repro.nightly.main`, which runs the same Typer command, and once
as real subprocesses). Done when: a second
night right after the first reuses every run; changing one reproduction's code re-runs only it and
the ones that `use` it; one reproduction failing does not stop the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from catalog.db import session_scope
from catalog.models import Run
from repro.nightly import main

from .conftest import write_reproduction

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SLUGS = ["tinyfake", "tinyfake_other", "tinyfake_user"]


def sync() -> None:
    from catalog.sync import sync as run_sync

    with session_scope() as session:
        run_sync(session)


def night(project: Path, *extra: str) -> dict[str, Any]:
    """One nightly at smoke scale; returns the JSON report (with the exit code)."""
    report = project / "report.json"
    code = main(["--scale", "smoke", "--device", "cpu", "--quiet", "--json", str(report), *extra])
    data = json.loads(report.read_text())
    assert data["exit_code"] == code
    return data


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {e["slug"]: e["status"] for e in report["entries"]}


def stored_runs() -> list[Run]:
    with session_scope() as session:
        return list(session.exec(select(Run).order_by(Run.recorded_at)))


def test_nightly_end_to_end_reuse_and_rerun_of_changed_code(tiny_project: Path) -> None:
    sync()
    site = tiny_project / "_site"
    first = night(tiny_project, "--site", str(site))
    assert first["exit_code"] == 0
    assert statuses(first) == dict.fromkeys(SLUGS, "succeeded")  # the method-only folder is not run
    runs = stored_runs()
    assert sorted(r.slug for r in runs) == SLUGS
    assert all(
        r.run_key and r.run_key.startswith("sha256:") and r.executor == "local" for r in runs
    )
    assert (site / "index.html").is_file()
    paper = (site / "papers" / "2099_Fake_A_arxiv_tf.html").read_text().replace("<wbr>", "")
    assert "tiny_error" in paper
    assert first["entries"][0]["run_id"] in (site / "runs.html").read_text()

    # a second night right after: every run reused, stored as new runs naming the measuring ones
    second = night(tiny_project, "--no-site")
    assert statuses(second) == dict.fromkeys(SLUGS, "reused")
    originals = {e["slug"]: e["run_id"] for e in first["entries"]}
    assert {e["slug"]: e["reused_from"] for e in second["entries"]} == originals
    assert all(e["changes"] == [] for e in second["entries"])
    runs = stored_runs()
    assert len(runs) == 6
    reused = [r for r in runs if r.reused_from]
    assert len(reused) == 3 and all(r.status == "succeeded" for r in reused)
    for entry in second["entries"]:
        run_dir = Path(entry["run_dir"])
        assert (run_dir / "results.json").is_file() and (run_dir / "reproduce.ipynb").is_file()

    # change tinyfake's code: it and tinyfake_user (uses it) re-run, tinyfake_other is reused
    (tiny_project / "repro" / "tinyfake" / "helper.py").write_text("SCALE = 1.0\n")
    third = night(tiny_project, "--no-site")
    assert statuses(third) == {
        "tinyfake": "succeeded",
        "tinyfake_other": "reused",
        "tinyfake_user": "succeeded",
    }
    assert third["exit_code"] == 0

    # --force re-runs everything
    fourth = night(tiny_project, "--no-site", "--force", "--only", "tinyfake_other")
    assert statuses(fourth) == {"tinyfake_other": "succeeded"}
    assert len(stored_runs()) == 10


def test_one_failing_reproduction_does_not_stop_the_others(tiny_project: Path) -> None:
    write_reproduction(tiny_project, "tinyfake_crash", crash=True)
    write_reproduction(tiny_project, "tinyfake_broken")
    (tiny_project / "repro" / "tinyfake_broken" / "expected.csv").write_text("id,source\nx,y\n")
    report = night(
        tiny_project, "--no-site", "--only", "tinyfake_crash", "tinyfake_broken", "tinyfake_other"
    )
    assert statuses(report) == {
        "tinyfake_crash": "failed",
        "tinyfake_broken": "error",
        "tinyfake_other": "succeeded",
    }
    assert report["exit_code"] == 0  # a failure is loud, but only a claim regression fails it
    entries = {e["slug"]: e for e in report["entries"]}
    assert "tiny fake crash" in entries["tinyfake_crash"]["error"]
    assert "expected.csv" in entries["tinyfake_broken"]["error"]
    with session_scope() as session:
        crashed = session.exec(select(Run).where(Run.slug == "tinyfake_crash")).one()
    assert crashed.status == "failed" and "tiny fake crash" in (crashed.error or "")
    again = night(tiny_project, "--no-site", "--only", "tinyfake_crash")
    assert statuses(again) == {"tinyfake_crash": "failed"}  # failed runs are never reused


def test_usage_errors_exit_2(tiny_project_sqlite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--only", "no_such_thing", "--no-site"]) == 2
    assert "no reproduction 'no_such_thing'" in capsys.readouterr().err
    assert main(["--only", "tinyfake_method", "--no-site"]) == 2
    assert "method-only folder" in capsys.readouterr().err
    assert main(["--executor-option", "oops", "--no-site"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["--scale", "medium", "--no-site"]) == 2  # rejected by the command line itself
    assert "--scale" in capsys.readouterr().err


def test_the_nox_session_command_as_a_subprocess(tiny_project_sqlite: Path) -> None:
    """What `nox -s nightly -- --scale smoke --only tinyfake` runs, as processes."""
    env = {**os.environ, "COLUMNS": "200"}
    bindir = Path(sys.executable).parent
    subprocess.run([str(bindir / "catalog"), "sync"], env=env, check=True, capture_output=True)
    command = [str(bindir / "repro"), "nightly", "--scale", "smoke", "--device", "cpu"]
    command += ["--only", "tinyfake", "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "no claim regression (1 succeeded)" in done.stdout
    assert (tiny_project_sqlite / "_site" / "index.html").is_file()  # default site folder
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "(1 reused)" in again.stdout
    assert '_bin("repro"), "nightly"' in (REPO / "noxfile.py").read_text()  # what nox calls
    # `python -m repro.nightly` is the same command
    helped = subprocess.run(
        [sys.executable, "-m", "repro.nightly", "--help"], env=env, capture_output=True, text=True
    )
    assert helped.returncode == 0 and "--only" in helped.stdout and "--no-site" in helped.stdout
    listed = subprocess.run(["nox", "-l"], cwd=REPO, capture_output=True, text=True, check=False)
    if listed.returncode == 0:  # nox is in the dev environment; the session must be listed
        assert "nightly ->" in listed.stdout
