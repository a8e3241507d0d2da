"""Shared fixtures: the catalog database on SQLite and on a real PostgreSQL, and a project copy.

PostgreSQL, the first of these that exists:

1. `ADVREPRO_TEST_PG`, a server URL (`.ci/run` starts one with `.ci/start-postgres`);
   `ADVREPRO_TEST_PG=none` turns the PostgreSQL half off on purpose;
2. a server already listening on 127.0.0.1:54329 (what `.ci/start-postgres` starts by default);
3. a throw-away server this test process starts itself when the PostgreSQL server binaries are
   installed (`.ci/start-postgres` into a temporary folder, on a free port; stopped and removed at
   the end of the session; under pytest-xdist one per worker), so the PostgreSQL half runs on a
   developer's machine as it does in CI;
4. none: the PostgreSQL cases are deselected, and the report header says why in one line (instead
   of one skip per case). In CI (`CI=true`) a missing server is an error, never a deselection, so
   the PostgreSQL half of the suite can never silently vanish.

Downloads: the suite runs with `REPRO_OFFLINE=1` (set here, for this process and every process
it starts: CLI subprocesses, notebook kernels), so no test reaches the network; a test of the
download path unsets it and fakes the host.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from catalog.db import reset_engines

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:54329/postgres"
OFF = {"none", "off", "skip", "0"}

os.environ["REPRO_OFFLINE"] = "1"  # before any test module imports repro (see the docstring)
# a developer's checkpoint folder must not be resumed from by the suite's runs (repro.checkpoint)
os.environ.pop("REPRO_CHECKPOINT_DIR", None)


def _share_the_cores() -> None:
    """Under pytest-xdist, give each worker its share of the cores as its CPU thread count.

    torch otherwise starts one thread per core in every worker and in every notebook kernel a
    smoke run starts, so n workers run n x cores threads on the cores: on two cores a smoke run
    took five times as long inside the suite as alone. The share is set through
    `OMP_NUM_THREADS` before torch is imported (kernels inherit it); a value the caller set wins.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(share)
    if "torch" in sys.modules:  # a plugin imported it first: the environment is read too late
        sys.modules["torch"].set_num_threads(share)


_share_the_cores()


class PgPlan(NamedTuple):
    """Where this session's PostgreSQL comes from: a known `url`, or `start` a throw-away one, or
    neither (`note` says why, once, in the report header)."""

    url: str | None
    start: bool
    note: str


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pg_bindir() -> Path | None:
    """The PostgreSQL server binaries (`initdb`), where `.ci/start-postgres` looks for them:
    Debian's newest `/usr/lib/postgresql/<version>/bin`, else `initdb` on PATH."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parts[-3].split(".") if part.isdigit())

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if debian:
        return debian[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def pg_plan() -> PgPlan:
    """Decide where PostgreSQL comes from (see the module docstring)."""
    url = os.environ.get("ADVREPRO_TEST_PG", "").strip()
    if url.lower() in OFF:
        return PgPlan(None, False, "off (ADVREPRO_TEST_PG=none); the PostgreSQL cases deselected")
    if url:
        return PgPlan(url, False, "the server of ADVREPRO_TEST_PG")
    if _listening("127.0.0.1", 54329):
        return PgPlan(DEFAULT_PG, False, "the server listening on 127.0.0.1:54329")
    bindir = _pg_bindir()
    if bindir is not None:
        return PgPlan(None, True, f"a throw-away server ({bindir}), started on first use")
    return PgPlan(
        None,
        False,
        "no server and no server binaries (apt-get install postgresql, or set"
        " ADVREPRO_TEST_PG); the PostgreSQL cases deselected",
    )


PLAN: PgPlan | None = None


def _plan() -> PgPlan:
    global PLAN
    if PLAN is None:
        PLAN = pg_plan()
    return PLAN


def pytest_report_header(config: pytest.Config) -> str:
    return f"postgresql: {_plan().note}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without any PostgreSQL (and outside CI), deselect the PostgreSQL cases: one header line
    says why, instead of a skip per case."""
    plan = _plan()
    if plan.url or plan.start or os.environ.get("CI"):
        return
    needs_pg = [
        item
        for item in items
        if item.get_closest_marker("postgres") or "pg_server" in getattr(item, "fixturenames", ())
    ]
    if needs_pg:
        config.hook.pytest_deselected(items=needs_pg)
        chosen = set(map(id, needs_pg))
        items[:] = [item for item in items if id(item) not in chosen]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_throwaway() -> tuple[str, dict[str, str]]:
    """Start a cluster with `.ci/start-postgres` in a fresh folder on a free port; its URL and the
    environment that `.ci/stop-postgres` needs to stop it."""
    data = tempfile.mkdtemp(prefix="advrepro-test-pg-")
    env = {**os.environ, "PGDATA": data, "PGPORT": str(_free_port())}
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "start-postgres")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        _stop_throwaway(env)
        lines = (done.stderr or done.stdout or "no output").strip().splitlines()
        raise RuntimeError(f"could not start a throw-away PostgreSQL: {lines[-1]}")
    return done.stdout.strip().splitlines()[-1], env


def _stop_throwaway(env: dict[str, str]) -> None:
    subprocess.run(
        ["bash", str(REPO / ".ci" / "stop-postgres"), "--remove"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a PostgreSQL server for tests (see the module docstring for where it comes from)."""
    plan = _plan()
    if plan.url:
        yield plan.url
        return
    if plan.start:
        try:
            url, env = _start_throwaway()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            if os.environ.get("CI"):
                pytest.fail(str(exc))
            pytest.skip(str(exc))
        try:
            yield url
        finally:
            _stop_throwaway(env)
        return
    if os.environ.get("CI"):
        pytest.fail("CI=true but no PostgreSQL server: set ADVREPRO_TEST_PG")
    pytest.skip(plan.note)


def _fresh_pg_database(server_url: str) -> tuple[str, str]:
    """Create an empty database on the server; return (its URL, its name)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"advrepro_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, name


def _drop_pg_database(server_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """An empty catalog database, once on SQLite (a file) and once on PostgreSQL (a fresh database).

    `DATABASE_URL` is set to it, and cached engines are reset before and after.
    """
    reset_engines()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
        reset_engines()
        return
    server = request.getfixturevalue("pg_server")
    url, name = _fresh_pg_database(server)
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        yield url
    finally:
        reset_engines()
        _drop_pg_database(server, name)


def copy_project(dest: Path) -> Path:
    """Copy the project's literature and reproductions (not runs, caches or the database) to `dest`."""
    ignore = shutil.ignore_patterns(
        "__pycache__", "*.pyc", "runs", "*.db", "*.db-*", ".ipynb_checkpoints"
    )
    for name in ("papers", "repro"):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest


@pytest.fixture
def project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of `papers/` and `repro/` with `ADVREPRO_ROOT` pointing at it, on `db_url`.

    Tests that edit references.bib or lists do it here, never in the checkout.
    """
    root = copy_project(tmp_path / "project")
    monkeypatch.setenv("ADVREPRO_ROOT", str(root))
    return root
