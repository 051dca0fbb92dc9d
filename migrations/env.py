"""Alembic environment: the URL comes from the platform's settings, or a
connection handed in by the caller (``credits db upgrade``, the tests)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from alembic.runtime.environment import NameFilterParentNames, NameFilterType
from sqlalchemy.engine import Connection

from credits.datasets.search import is_search_structure
from credits.db import make_engine
from credits.models import metadata
from credits.settings import load_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _include_name(name: str | None, type_: NameFilterType, parents: NameFilterParentNames) -> bool:
    """Everything but the dataset search structures of one dialect (migration 0010)."""
    return not is_search_structure(name, type_, parents.get("table_name"))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=_include_name,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.attributes.get("database_url") or load_settings().database_url.get_secret_value()
    engine = make_engine(url)
    try:
        with engine.connect() as fresh:
            _configure(fresh)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `credits db upgrade`")
run_migrations_online()
