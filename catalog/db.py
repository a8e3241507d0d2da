"""Engine creation, automatic migrations and the one-transaction-per-command session.

SQLite gets WAL, a busy timeout and foreign keys so that several writers (parallel runs, nightly
jobs) wait for each other instead of failing; PostgreSQL gets a connect timeout so an unreachable
server is one clear error, not a hang. Every command that opens the database first brings the
schema to Alembic's head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session, create_engine

from catalog import CatalogError
from catalog.config import database_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str | None = None) -> Engine:
    """An engine for `url` (default `database_url()`), without touching the schema."""
    url = url or database_url()
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise CatalogError(f"DATABASE_URL {url!r} is not a database URL: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise CatalogError(f"database {_redact(url)}: folder {parent} does not exist")
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    try:
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except Exception as exc:  # a missing driver, a bad option
        raise CatalogError(f"database {_redact(url)}: {exc}") from exc


def _alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest migration's revision id."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None, "catalog/migrations has no revision"
    return head


def migrate(engine: Engine) -> None:
    """Bring the schema to Alembic's head (a no-op, one query, when it already is)."""
    from alembic import command

    with engine.connect() as connection:
        tables = inspect(connection).get_table_names()
        current = None
        if "alembic_version" in tables:
            current = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    if current == head_revision():
        return
    cfg = _alembic_config(engine)
    command.upgrade(cfg, "head")


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    """A migrated engine for `url` (default `database_url()`), cached per URL for the process."""
    url = url or database_url()
    if url not in _ENGINES:
        engine = make_engine(url)
        try:
            migrate(engine)
        except OperationalError as exc:
            engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise CatalogError(f"cannot open database {_redact(url)}: {reason}") from exc
        _ENGINES[url] = engine
    return _ENGINES[url]


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back (nothing stored) on any error."""
    engine = get_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def reset_engines() -> None:
    """Dispose of and forget cached engines (tests switch DATABASE_URL between cases)."""
    while _ENGINES:
        _ENGINES.popitem()[1].dispose()
