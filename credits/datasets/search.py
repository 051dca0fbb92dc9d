"""Full-text search of dataset versions in the database's own engine.

Migration 0010 builds the index over ``dataset_versions.search_text`` (title,
description, keywords and creator names, lowercased, kept by the service):

- on SQLite an FTS5 table, :data:`FTS_TABLE`, whose content is
  ``dataset_versions`` and which triggers keep in step with it;
- on PostgreSQL a stored generated ``tsvector`` column, :data:`VECTOR_COLUMN`,
  with a GIN index, :data:`VECTOR_INDEX`.

A query is read as words (runs of letters and digits); a version matches when
it has every word, each as a word or the start of one ("glac" finds
"glacier"), and matches are ranked by BM25 (SQLite) or ``ts_rank_cd``
(PostgreSQL). Neither structure is in the SQLAlchemy models, as each exists on
one dialect alone: :func:`is_search_structure` tells the migrations' drift
check to leave them be. A later SQLite migration that rebuilds
``dataset_versions`` (Alembic's batch mode copies it to a new table) drops the
triggers with it: it must create them again and ``'rebuild'`` the FTS table,
as migration 0010 does.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, Select, column, func, literal_column, select, table
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause

from credits.datasets.models import DatasetVersion

FTS_TABLE = "dataset_versions_fts"
VECTOR_COLUMN = "search_vector"
VECTOR_INDEX = "ix_dataset_versions_search_vector"
MAX_WORDS = 32
_WORD = re.compile(r"[^\W_]+")


def words_of(text: str) -> list[str]:
    """Every word of ``text``, lowercased, split at anything not a letter or digit:
    how both what is indexed and what is searched for are split."""
    return list(_WORD.findall(text.lower()))


def search_words(text: str) -> list[str]:
    """The words of a query, lowercased, in order, each once (at most :data:`MAX_WORDS`)."""
    words: list[str] = []
    for word in words_of(text):
        if word not in words:
            words.append(word)
    return words[:MAX_WORDS]


def is_search_structure(name: str | None, type_: str, parent: str | None = None) -> bool:
    """Whether a schema object is one of migration 0010's dialect-specific search
    structures (for Alembic's ``include_name``)."""
    if name is None:
        return False
    if type_ == "table":
        return name == FTS_TABLE or name.startswith(f"{FTS_TABLE}_")
    if type_ == "column":
        return name == VECTOR_COLUMN and parent == DatasetVersion.__tablename__
    if type_ == "index":
        return name == VECTOR_INDEX
    return False


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def fts5_query(words: list[str]) -> str:
    """Every word as a prefix, all required: ``"glac"* "ice"*``."""
    return " ".join(f'"{word}"*' for word in words)


def tsquery(words: list[str]) -> str:
    """Every word as a prefix, all required: ``glac:* & ice:*``."""
    return " & ".join(f"{word}:*" for word in words)


def matches(session: Session, words: list[str]) -> Select[tuple[int, float]]:
    """(version id, score) of every version matching all ``words``; a lower score is a
    better match on both engines."""
    if _is_postgres(session):
        vector: ColumnClause[object] = column(VECTOR_COLUMN)
        versions = table(DatasetVersion.__tablename__, column("id"), vector)
        query = func.to_tsquery("simple", tsquery(words))
        return select(
            versions.c.id.label("version_id"),
            (-func.ts_rank_cd(versions.c[VECTOR_COLUMN], query)).label("score"),
        ).where(versions.c[VECTOR_COLUMN].bool_op("@@")(query))
    fts = table(FTS_TABLE, column("rowid"))
    whole: ColumnElement[object] = literal_column(FTS_TABLE)
    return select(fts.c.rowid.label("version_id"), func.bm25(whole).label("score")).where(
        whole.op("MATCH")(fts5_query(words))
    )
