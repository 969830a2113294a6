"""Alembic's entry point for TEA's postgres schema (see tea/migrations/__init__.py)."""
from __future__ import annotations

import sqlalchemy
from alembic import context

from tea.migrations import LOCK_KEY, VERSION_TABLE

config = context.config


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True,
                      version_table=VERSION_TABLE, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = sqlalchemy.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, version_table=VERSION_TABLE)
            with context.begin_transaction():
                # nodes starting together: the second waits here, then finds the schema current
                connection.execute(sqlalchemy.text(f"SELECT pg_advisory_xact_lock({LOCK_KEY})"))
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
