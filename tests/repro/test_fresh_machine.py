"""A fresh machine in two commands (issue 10), and the faults of `repro run` that probing found.

- Data: `repro run` downloads the public datasets that are missing (`repro.provision.provide`) when
  their host answers, quickly gives up when it does not, and `--offline` / `REPRO_OFFLINE` never
  probes at all. No test reaches the network: an unreachable host is a closed port on 127.0.0.1,
  a reachable one a fake download.
- `nox -s reproduce` installs Debian's Fashion-MNIST when it is missing (as root, on Debian).
- `nox -s tests` starts its own throw-away PostgreSQL when the binaries exist, and without them
  says so once instead of skipping every PostgreSQL case.
- Threads: no scale pins them; `repro run --threads N` reaches torch in the kernel.
- `repro run --seed 2**80` and a missing `--data-dir` are one-line errors with nothing created;
  SIGINT/SIGTERM records the run as interrupted (run folder and catalog) and the kernel dies
  without a traceback.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from catalog.db import reset_engines, session_scope
from catalog.models import Run
from repro import data as rdata
from repro import provision
from repro.cli import app
from repro.data import DataUnavailable, available, load_dataset
from repro.runner import execute_run

from .conftest import CLAIMS_PY, EXPECTED_CSV

REPO = Path(__file__).resolve().parents[2]
SHARED_MNIST = Path(
    os.environ.get("REPRO_DATA_DIR") or REPO.parent / "shared" / "datasets"
).joinpath("mnist")

FRESH_TOML = """\
slug = "fresh"
key = "2015_Goodfellow_I_p-iclr_ehae"
title = "A reproduction that needs CIFAR-10 (fresh-machine tests)"
datasets = ["cifar10"]
uses = []

[metrics]
error_pct = "percent"
accuracy_pct = "percent"

[scales.smoke]
sleep = 0
torch_threads = false

[scales.small]
sleep = 0
torch_threads = true

[scales.full]
sleep = 240
torch_threads = false
"""

FRESH_PY = """\
# %% tags=["parameters"]
scale = "smoke"
device = "cpu"
seed = 0
data_dir = None
out_dir = "."

# %%
import os
import time

from repro.config import scale_params
from repro.record import Recorder

P = scale_params("fresh", scale)
rec = Recorder(out_dir)
rec.row("a_match", 10.2, dataset="mnist")
rec.metric("offline", 1.0 if os.environ.get("REPRO_OFFLINE") == "1" else 0.0)
if P["torch_threads"]:
    import torch

    rec.metric("threads", torch.get_num_threads())

# %%
print(f"READY {os.getpid()}", flush=True)
for _ in range(int(P["sleep"]) * 2):
    time.sleep(0.5)
"""


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project holding only `repro/fresh/` (which needs CIFAR-10), on a SQLite catalog, with
    an empty private data cache. (The runner is what is tested here, not the backend.)"""
    project = tmp_path / "project"
    (project / "papers").mkdir(parents=True)
    shutil.copy(REPO / "papers" / "references.bib", project / "papers" / "references.bib")
    folder = project / "repro" / "fresh"
    folder.mkdir(parents=True)
    reset_engines()
    monkeypatch.setenv("ADVREPRO_ROOT", str(project))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'catalog.db'}")
    (folder / "repro.toml").write_text(FRESH_TOML, encoding="utf-8")
    (folder / "expected.csv").write_text(EXPECTED_CSV, encoding="utf-8")
    (folder / "claims.py").write_text(CLAIMS_PY, encoding="utf-8")
    (folder / "reproduce.py").write_text(FRESH_PY, encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    yield folder
    reset_engines()


@pytest.fixture
def private_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache and no REPRO_DATA_DIR: nothing is available but Debian's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    return tmp_path / "xdg" / "advrepro" / "data"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


def _unreachable(monkeypatch: pytest.MonkeyPatch, name: str = "cifar10") -> str:
    """Point `name`'s download host at a closed port on this machine (refused at once)."""
    spec = dataclasses.replace(rdata.DATASETS[name], host="127.0.0.1", port=_closed_port())
    monkeypatch.setitem(rdata.DATASETS, name, spec)
    return spec.host


def _never_probe(*args: object, **kwargs: object) -> bool:
    raise AssertionError("the network was probed although downloading is forbidden")


# --------------------------------------------------------------------------- data


def test_the_suite_runs_offline() -> None:
    assert os.environ["REPRO_OFFLINE"] == "1" and rdata.offline()


def test_offline_never_probes(
    private_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch  # noqa: F401  (its first import is not what is timed)

    monkeypatch.setattr(rdata, "_reachable", _never_probe)
    monkeypatch.setattr(rdata, "_download", _never_probe)
    start = time.monotonic()
    with pytest.raises(DataUnavailable, match="REPRO_OFFLINE=1 forbids downloading") as info:
        load_dataset("cifar10", "test", data_dir=tmp_path, download=True)
    assert "\n" not in str(info.value)
    answers = provision.provide(["cifar10", "mnist", "svhn"], tmp_path)
    assert [(a.name, a.status) for a in answers] == [("cifar10", "missing"), ("mnist", "missing")]
    assert all("downloading is forbidden (--offline" in a.detail for a in answers)
    assert time.monotonic() - start < 2.0


def test_an_unreachable_host_is_an_immediate_clear_answer(
    private_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPRO_OFFLINE")
    import torch  # noqa: F401  (its first import is not what is timed)

    monkeypatch.setattr(rdata, "_download", _never_probe)
    host = _unreachable(monkeypatch)
    start = time.monotonic()
    (answer,) = provision.provide(["cifar10"], tmp_path)
    assert answer.status == "missing"
    assert f"{host} did not answer within" in answer.detail
    with pytest.raises(DataUnavailable, match=rf"download=True but {host} is not reachable"):
        load_dataset("cifar10", "test", data_dir=tmp_path, download=True)
    assert time.monotonic() - start < 2.0


@pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="the shared MNIST test split is not on this machine",
)
def test_a_missing_dataset_is_downloaded_when_the_host_answers(
    private_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download itself is torchvision's (checksummed as it arrives); here a fake one puts the
    official files where torchvision would, and the loader verifies them as usual."""
    monkeypatch.delenv("REPRO_OFFLINE")
    monkeypatch.setattr(rdata, "_reachable", lambda host, port=443, timeout=3.0: True)
    fetched: list[tuple[str, str]] = []

    def fake_download(spec: Any, split: str) -> None:
        fetched.append((spec.name, split))
        raw = private_data / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for path in SHARED_MNIST.glob("t10k-*.gz"):
            shutil.copy(path, raw / path.name)

    monkeypatch.setattr(rdata, "_download", fake_download)
    assert not available("mnist-test-split")
    (answer,) = provision.provide(["mnist-test-split"])
    assert answer.status == "downloaded" and str(private_data) in answer.detail
    assert fetched == [("mnist", "test")]
    assert len(load_dataset("mnist-test-split", "test")) == 2000
    assert [a.status for a in provision.provide(["mnist-test-split"])] == ["present"]  # once only


def test_the_runner_warns_at_once_when_data_cannot_be_fetched(
    fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPRO_OFFLINE")
    host = _unreachable(monkeypatch)
    start = time.monotonic()
    result = execute_run("fresh", scale="smoke", device="cpu", out=tmp_path / "runs")
    assert result.status == "succeeded"
    (warning,) = [w for w in result.warnings if "cifar10" in w]
    assert f"{host} did not answer" in warning and "cannot run" in warning
    metrics = {m["name"]: m["value"] for m in result.summary["metrics"]}
    assert metrics["offline"] == 0.0  # downloading was allowed: the kernel is not told otherwise
    assert result.summary["provenance"]["threads"] is None
    assert time.monotonic() - start < 120  # (the kernel's start-up; the probe itself is instant)


def test_offline_reaches_the_kernel_and_never_probes(
    fresh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPRO_OFFLINE")
    monkeypatch.setattr(rdata, "_reachable", _never_probe)
    result = execute_run("fresh", scale="smoke", device="cpu", out=tmp_path / "runs", offline=True)
    assert result.status == "succeeded"
    assert any("downloading is forbidden (--offline" in w for w in result.warnings)
    metrics = {m["name"]: m["value"] for m in result.summary["metrics"]}
    assert metrics["offline"] == 1.0
    assert "REPRO_OFFLINE" not in os.environ  # the runner's own environment is put back


# --------------------------------------------------------------------------- threads


def test_no_scale_pins_cpu_threads() -> None:
    pinned = [
        f"{path.parent.name}: [scales.{name}]"
        for path in sorted((REPO / "repro").glob("*/repro.toml"))
        for name, table in tomllib.loads(path.read_text(encoding="utf-8")).get("scales", {}).items()
        if "threads" in table
    ]
    assert pinned == []


def test_threads_and_offline_options_reach_the_notebook(fresh: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app,
        [
            *("run", "fresh", "--scale", "small", "--device", "cpu"),
            *("--threads", "3", "--offline", "--out", str(out), "--no-store", "--no-progress"),
        ],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = (out / "fresh").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = {m["name"]: m["value"] for m in summary["metrics"]}
    assert metrics["threads"] == 3.0 and metrics["offline"] == 1.0
    assert summary["provenance"]["threads"] == 3


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", str(2**80)], "--seed 1208925819614629174706176: out of range"),
        (["--seed", "-1"], "--seed -1: out of range"),
        (["--data-dir", "/no/such/data"], "--data-dir /no/such/data: does not exist"),
        (["--threads", "0"], "--threads 0: must be at least 1"),
    ],
)
def test_bad_options_are_one_line_and_create_nothing(
    fresh: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "fresh", "--scale", "smoke", "--out", str(out), *args])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()
    with session_scope() as session:
        assert session.exec(select(Run)).all() == []


def test_the_largest_seed_is_accepted(fresh: Path, tmp_path: Path) -> None:
    result = execute_run("fresh", scale="smoke", device="cpu", seed=2**63 - 1, out=tmp_path / "r")
    assert result.summary["seed"] == 2**63 - 1 and result.status == "succeeded"


# --------------------------------------------------------------------------- interruption


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_is_recorded_and_the_kernel_stops_quietly(
    fresh: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    out = tmp_path / "runs"
    runner = subprocess.Popen(
        [
            *(sys.executable, "-m", "repro.cli", "run", "fresh"),
            *("--scale", "full", "--device", "cpu", "--out", str(out)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    kernel = None
    try:
        assert runner.stderr is not None
        deadline = time.monotonic() + 180
        for line in runner.stderr:
            if line.startswith("READY "):
                kernel = int(line.split()[1])
                break
            assert time.monotonic() < deadline, "the notebook never started"
        assert kernel is not None and _alive(kernel)
        time.sleep(0.5)
        runner.send_signal(signum)
        stdout, rest = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130, rest
    assert "Traceback" not in rest and "Traceback" not in stdout
    assert f"interrupted by {signum.name}" in rest and "stored in the catalog" in rest
    for _ in range(50):  # the kernel's process group was killed
        if not _alive(kernel):
            break
        time.sleep(0.1)
    assert not _alive(kernel)
    (run_dir,) = (out / "fresh").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert f"interrupted by {signum.name}" in summary["error"]
    assert {r["id"]: r["value"] for r in summary["rows"]}["a_match"] == 10.2  # partial results
    reset_engines()
    with session_scope() as session:
        run = session.get(Run, summary["run_id"])
        assert run is not None and run.status == "interrupted"


# --------------------------------------------------------------------------- nox sessions


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def noxfile() -> ModuleType:
    return _load(REPO / "noxfile.py", "advrepro_noxfile")


class FakeSession:
    """What `_provide_debian_data` asks of a nox session, recorded."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []
        self.logs: list[str] = []

    def run(self, *args: str, **kwargs: Any) -> None:
        self.commands.append(args)

    def log(self, text: str) -> None:
        self.logs.append(text)

    warn = log


def test_reproduce_finds_the_slug_and_the_datasets(noxfile: ModuleType) -> None:
    assert noxfile._slug_and_options(["--scale", "small", "fgsm", "--offline"]) == (
        "fgsm",
        ["--scale", "small", "--offline"],
    )
    assert noxfile._needs_fashion_mnist("defense_gan")
    assert not noxfile._needs_fashion_mnist("no_such_reproduction")


@pytest.mark.parametrize(
    ("situation", "installs"),
    [("root on Debian", True), ("not root", False), ("--offline", False), ("present", False)],
)
def test_reproduce_installs_debian_fashion_mnist_only_when_it_can(
    noxfile: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    situation: str,
    installs: bool,
) -> None:
    monkeypatch.setattr(noxfile, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-copy")
    monkeypatch.setattr(noxfile, "_available_elsewhere", lambda env, d: situation == "present")
    monkeypatch.setattr(noxfile.os, "geteuid", lambda: 1000 if situation == "not root" else 0)
    monkeypatch.setattr(noxfile.shutil, "which", lambda name: f"/usr/bin/{name}")
    real_is_file = Path.is_file
    monkeypatch.setattr(
        Path, "is_file", lambda p: str(p) == "/etc/debian_version" or real_is_file(p)
    )
    session = FakeSession()
    args = ["defense_gan", "--scale", "smoke"] + (["--offline"] if situation == "--offline" else [])
    noxfile._provide_debian_data(session, {}, args)
    apt = [c for c in session.commands if c[0] == "apt-get"]
    if installs:
        assert apt[0][:2] == ("apt-get", "update")
        assert apt[1][:2] == ("apt-get", "install") and "dataset-fashion-mnist" in apt[1]
        assert any("installing Debian's dataset-fashion-mnist" in line for line in session.logs)
    else:
        assert apt == []
    if situation == "not root":
        assert any("needs Debian and root" in line for line in session.logs)


@pytest.fixture(scope="module")
def suite_conftest() -> ModuleType:
    return _load(REPO / "tests" / "conftest.py", "advrepro_suite_conftest")


def test_postgres_plan_without_any_server(
    suite_conftest: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADVREPRO_TEST_PG", raising=False)
    monkeypatch.setattr(suite_conftest, "_listening", lambda host, port: False)
    monkeypatch.setattr(suite_conftest, "_pg_bindir", lambda: None)
    plan = suite_conftest.pg_plan()
    assert plan.url is None and not plan.start
    assert "no server binaries" in plan.note and "deselected" in plan.note
    monkeypatch.setattr(suite_conftest, "_pg_bindir", lambda: Path("/usr/lib/postgresql/15/bin"))
    assert suite_conftest.pg_plan().start  # binaries: a throw-away server
    monkeypatch.setenv("ADVREPRO_TEST_PG", "postgresql+psycopg://u@db:5432/x")
    assert suite_conftest.pg_plan().url == "postgresql+psycopg://u@db:5432/x"  # CI's server wins


def test_without_postgres_the_suite_says_so_once(tmp_path: Path) -> None:
    env = {**os.environ, "ADVREPRO_TEST_PG": "none"}
    env.pop("CI", None)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "tests/catalog/test_db.py", "--co"),
            *("-p", "no:xdist", "-p", "no:cacheprovider"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("postgresql: off") == 1
    assert "[postgres]" not in done.stdout and "[sqlite]" in done.stdout
    assert "2 deselected" in done.stdout


@pytest.mark.skipif(
    not (
        list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if Path("/usr/lib/postgresql").is_dir()
        else shutil.which("initdb")
    ),
    reason="no PostgreSQL server binaries here",
)
def test_a_throw_away_postgres_starts_and_leaves_nothing(suite_conftest: ModuleType) -> None:
    from sqlalchemy import create_engine, text

    url, env = suite_conftest._start_throwaway()
    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
        engine.dispose()
    finally:
        suite_conftest._stop_throwaway(env)
    assert not Path(env["PGDATA"]).exists()
