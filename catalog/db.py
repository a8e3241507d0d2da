"""Engine creation, automatic migrations and the one-transaction-per-command session.

SQLite gets WAL, a busy timeout and foreign keys so that several writers (parallel runs, nightly
jobs) wait for each other instead of failing; PostgreSQL gets a connect timeout so an unreachable
server is one clear error, not a hang. Every command that opens the database first brings the
schema to Alembic's head.

A SQLite catalog we may not write (the file or its folder read-only: a catalog shipped with a
site, a colleague's file) is opened read-only (`mode=ro`) and never switched to WAL, since
switching is itself a write: `catalog list`, `show` and `search` work on it, and a command that
writes fails with SQLite's "attempt to write a readonly database". In a read-only folder a WAL
database cannot create its `-shm` index, so it is opened `immutable` as well (SQLite then trusts
that nobody writes the file meanwhile, which the folder's permissions already promise).
A file that is not a SQLite database is named in the error.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

if TYPE_CHECKING:  # sqlmodel (pydantic + ORM) is imported only by commands that need a Session
    from sqlmodel import Session

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
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL is persistent: switch only a file that is not in WAL yet (reading the mode writes nothing)
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_read_only_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _read_only(path: Path) -> bool:
    """Whether an existing SQLite file cannot be written here (the file or its folder read-only:
    SQLite also writes a journal or WAL index beside the file)."""
    return path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def _read_only_engine(url: str, path: Path) -> Engine:
    """An engine whose connections open `path` with `mode=ro` (plus `immutable` when the folder is
    read-only too, the only way SQLite reads a WAL file there)."""
    uri = path.as_uri() + "?mode=ro" + ("" if os.access(path.parent, os.W_OK) else "&immutable=1")

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)

    engine = create_engine(url, creator=connect)
    event.listen(engine, "connect", _sqlite_read_only_pragmas)
    return engine


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
            path = Path(database).expanduser().resolve()
            if not path.parent.is_dir():
                raise CatalogError(f"database {_redact(url)}: folder {path.parent} does not exist")
            if path.is_dir():
                raise CatalogError(f"database {_redact(url)}: {path} is a folder, not a file")
            if _read_only(path):
                return _read_only_engine(url, path)
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


def _scan_head() -> str | None:
    """The head revision read from the version files' `revision`/`down_revision` lines, without
    importing Alembic (~0.3 s): the common, linear case of every command's up-to-date check."""
    import re

    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        rev = re.search(r"^revision(?:\s*:[^=]*)?\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        down = re.search(r"^down_revision(?:\s*:[^=]*)?\s*=\s*(.+)$", text, re.M)
        if rev is None or down is None:
            return None
        revisions.add(rev.group(1))
        parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def head_revision() -> str:
    """The newest migration's revision id."""
    fast = _scan_head()
    if fast is not None:
        return fast
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None, "catalog/migrations has no revision"
    return head


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if "alembic_version" not in inspect(connection).get_table_names():
            return None
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


MIGRATION_LOCK_ID = 0x616476_72657072  # "advrepr": PostgreSQL advisory lock key for migrations


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialize migrations across processes: without it, jobs that open a fresh (or outdated)
    catalog at the same moment (SLURM jobs, nightly runners) all run `CREATE TABLE` and all but
    one fail with "table ... already exists". PostgreSQL: a session advisory lock; SQLite: an
    exclusive `flock` on `<database>-migrate.lock` beside the file (same host, like SQLite itself)."""
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
            try:
                yield
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
        return
    database = engine.url.database if backend == "sqlite" else None
    try:
        import fcntl
    except ImportError:  # Windows: no cross-process lock; concurrent first opens stay racy there
        fcntl = None
    if fcntl is None or not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    with open(f"{database}-migrate.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Bring the schema to Alembic's head (a no-op, one query, when it already is)."""
    if _current_revision(engine) == head_revision():
        return
    from alembic import command

    with _migration_lock(engine):
        if _current_revision(engine) == head_revision():  # another process migrated meanwhile
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
        except (DBAPIError, sqlite3.Error) as exc:  # unreachable, not a database, read-only, ...
            engine.dispose()
            orig = getattr(exc, "orig", None) or exc
            reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
            raise CatalogError(f"cannot open database {_redact(url)}: {reason}") from exc
        _ENGINES[url] = engine
    return _ENGINES[url]


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back (nothing stored) on any error."""
    from sqlmodel import Session

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
