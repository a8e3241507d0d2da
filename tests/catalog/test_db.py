"""The database layer: migrations on both backends, one transaction per command, clear errors."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlmodel import select

from catalog import CatalogError
from catalog.db import get_engine, head_revision, session_scope
from catalog.models import Paper


def test_migrations_create_every_table(db_url: str) -> None:
    engine = get_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert {"paper", "author", "listentry", "run", "measurement", "alembic_version"} <= tables
    with engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert version == head_revision()


def test_session_scope_rolls_back_on_error(db_url: str) -> None:
    with pytest.raises(RuntimeError), session_scope(db_url) as session:
        session.add(Paper(key="2000_X_Y_arxiv_t", title="T", year=2000, bibtex="@misc{...}"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(db_url) as session:
        assert session.exec(select(Paper)).all() == []


def test_unreachable_postgres_is_one_clear_error() -> None:
    with pytest.raises(CatalogError, match=r"cannot open database postgresql.*127\.0\.0\.1:1"):
        get_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")


def test_missing_sqlite_folder_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        get_engine(f"sqlite:///{tmp_path}/no/such/dir/catalog.db")


def test_not_a_url_is_one_clear_error() -> None:
    with pytest.raises(CatalogError, match="is not a database URL"):
        get_engine("definitely not a url")
