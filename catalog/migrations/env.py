"""Alembic environment: runs on the engine `catalog.db.migrate` hands over (no alembic.ini)."""

from alembic import context
from sqlmodel import SQLModel

import catalog.models  # noqa: F401 - registers the tables on SQLModel.metadata

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    """Migrate through the engine in `config.attributes`, or one made from the URL."""
    engine = config.attributes.get("engine")
    if engine is None:
        from catalog.db import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run_migrations_online()
