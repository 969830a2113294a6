"""The postgres backend's schema, as Alembic migrations (``tea migrate``; automatic at start unless
``postgres.auto_migrate`` is false).

Only this package uses SQLAlchemy (Alembic needs it); the backend itself talks psycopg directly.
Migrations are plain SQL (``op.execute``), so ``tea migrate --sql`` prints exactly what runs.
Alembic's bookkeeping lives in ``tea_schema_version``, so a database shared with another
Alembic-managed application keeps both apart.
"""
from __future__ import annotations

import io
import os
from typing import Any

VERSION_TABLE = "tea_schema_version"
LOCK_KEY = 0x7EA5C4E3  # pg_advisory_xact_lock key: one migrating node at a time
_HERE = os.path.dirname(os.path.abspath(__file__))


def sqlalchemy_url(url: str) -> str:
    """A libpq URL (postgresql://, postgres://) as SQLAlchemy's psycopg 3 URL."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError("a PostgreSQL URL starts with postgresql:// (or postgres://)")


def _config(url: str | None, buffer: Any = None) -> Any:
    from alembic.config import Config

    config = Config(output_buffer=buffer) if buffer is not None else Config()
    config.set_main_option("script_location", _HERE)
    # (ConfigParser interpolation: a literal % in a password must be doubled)
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url or "postgresql://localhost/tea").replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision this TEA knows."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(_config(None)).get_current_head()
    assert revision is not None
    return revision


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (blocking: run it in a thread from async code)."""
    from alembic import command

    command.upgrade(_config(url), revision)


def sql(revision: str = "head", start: str | None = None) -> str:
    """The DDL of the migrations (offline mode), from ``start`` (empty database) up to ``revision``."""
    from alembic import command

    buffer = io.StringIO()
    command.upgrade(_config(None, buffer), f"{start}:{revision}" if start else revision, sql=True)
    return buffer.getvalue()


def current(url: str) -> str | None:
    """The revision a database is at (None: never migrated)."""
    import sqlalchemy
    from alembic.runtime.migration import MigrationContext

    engine = sqlalchemy.create_engine(sqlalchemy_url(url), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    finally:
        engine.dispose()
