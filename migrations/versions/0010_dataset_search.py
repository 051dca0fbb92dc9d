"""dataset search

The catalogue's full-text search in each database's own engine, over the
versions' ``search_text`` (title, description, keywords, creator names, kept
by the service):

- SQLite: an FTS5 table, ``dataset_versions_fts``, with ``dataset_versions``
  as its external content, kept in step by three triggers (insert, update of
  ``search_text``, delete) and filled from the rows already there.
- PostgreSQL: a stored generated column, ``search_vector`` (``tsvector`` of the
  ``simple`` configuration), with a GIN index.

Neither is in the SQLAlchemy models (each exists on one dialect alone);
``migrations/env.py`` leaves them out of the drift check
(``credits.datasets.search.is_search_structure``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:10:00

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SQLITE_UPGRADE = (
    "CREATE VIRTUAL TABLE dataset_versions_fts USING fts5("
    "search_text, content='dataset_versions', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER dataset_versions_fts_insert AFTER INSERT ON dataset_versions BEGIN "
    "INSERT INTO dataset_versions_fts(rowid, search_text) VALUES (new.id, new.search_text); "
    "END",
    "CREATE TRIGGER dataset_versions_fts_update AFTER UPDATE OF search_text ON dataset_versions "
    "BEGIN "
    "INSERT INTO dataset_versions_fts(dataset_versions_fts, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "INSERT INTO dataset_versions_fts(rowid, search_text) VALUES (new.id, new.search_text); "
    "END",
    "CREATE TRIGGER dataset_versions_fts_delete AFTER DELETE ON dataset_versions BEGIN "
    "INSERT INTO dataset_versions_fts(dataset_versions_fts, rowid, search_text) "
    "VALUES ('delete', old.id, old.search_text); "
    "END",
    "INSERT INTO dataset_versions_fts(dataset_versions_fts) VALUES ('rebuild')",
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER dataset_versions_fts_delete",
    "DROP TRIGGER dataset_versions_fts_update",
    "DROP TRIGGER dataset_versions_fts_insert",
    "DROP TABLE dataset_versions_fts",
)
POSTGRES_UPGRADE = (
    "ALTER TABLE dataset_versions ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, search_text)) STORED",
    "CREATE INDEX ix_dataset_versions_search_vector ON dataset_versions "
    "USING gin (search_vector)",
)
POSTGRES_DOWNGRADE = (
    "DROP INDEX ix_dataset_versions_search_vector",
    "ALTER TABLE dataset_versions DROP COLUMN search_vector",
)


def _run(statements: Sequence[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name == "sqlite":
        _run(SQLITE_UPGRADE)
    else:
        _run(POSTGRES_UPGRADE)


def downgrade() -> None:
    """Downgrade schema: the search structures go; the versions' text stays."""
    if op.get_bind().dialect.name == "sqlite":
        _run(SQLITE_DOWNGRADE)
    else:
        _run(POSTGRES_DOWNGRADE)
