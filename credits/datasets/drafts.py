"""Loading a version to change it (only a draft, only by those who manage its project),
and the text that search reads."""

from __future__ import annotations

from sqlalchemy.orm import Session

from credits.datasets.errors import VersionImmutable
from credits.datasets.models import DatasetVersion, VersionState
from credits.datasets.search import words_of
from credits.identity.access_datasets import load_version, require_manager
from credits.identity.actor import Actor


def editable_draft(session: Session, actor: Actor, version_id: int) -> DatasetVersion:
    """The version, locked, when the actor manages it and it is a draft.

    Raises VersionNotFound, DatasetForbidden, or VersionImmutable (409) for any
    version that is not a draft: published versions refuse every edit.
    """
    version = load_version(session, actor, version_id, lock=True)
    require_manager(session, actor, version)
    if version.state != VersionState.DRAFT.value:
        raise VersionImmutable(
            f"version {version.number} of this dataset is {version.state}; only a draft "
            "changes: start a new version instead",
            current_state=version.state,
        )
    return version


def search_text(version: DatasetVersion) -> str:
    """The words of the title, description, keywords and creator names, one part to
    a line, split as queries are (:func:`search_words`): both engines' parsers then
    see the same words on both sides (PostgreSQL's own reads ``Sentinel-1`` as
    ``sentinel`` and ``-1``, which the query word ``1`` would never match)."""
    names = [str(creator.get("name", "")) for creator in version.creators]
    keywords = [keyword.keyword for keyword in version.keywords]
    parts = [version.title, version.description, *keywords, *names]
    return "\n".join(" ".join(words_of(part)) for part in parts)
