"""Shared fixtures: the catalog database on SQLite and on a real PostgreSQL, and a project copy.

PostgreSQL: `ADVREPRO_TEST_PG` names a server URL (`.ci/run` starts one with `.ci/start-postgres`);
when it is unset, a server already listening on 127.0.0.1:54329 is used if there is one, else
the PostgreSQL cases are skipped locally. In CI (`CI=true`) a missing server is an error, not a skip,
so the PostgreSQL half of the suite can never silently vanish.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog.db import reset_engines

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:54329/postgres"


def _pg_server_url() -> str | None:
    url = os.environ.get("ADVREPRO_TEST_PG")
    if url:
        return url
    try:
        with socket.create_connection(("127.0.0.1", 54329), timeout=0.5):
            return DEFAULT_PG
    except OSError:
        return None


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of a PostgreSQL server for tests (skip locally, fail in CI, when there is none)."""
    url = _pg_server_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail("CI=true but no PostgreSQL server: set ADVREPRO_TEST_PG")
        pytest.skip("no PostgreSQL server (run .ci/start-postgres or set ADVREPRO_TEST_PG)")
    return url


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
