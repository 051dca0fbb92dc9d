"""Loading a version to change it (only a draft, only by those who manage its project),
and the text that search reads."""

from __future__ import annotations

from sqlalchemy.orm import Session

from credits.datasets.errors import VersionImmutable
from credits.datasets.models import DatasetVersion, VersionState
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
    """Lowercased title, description, keywords and creator names, one to a line."""
    names = [str(creator.get("name", "")) for creator in version.creators]
    keywords = [keyword.keyword for keyword in version.keywords]
    return "\n".join([version.title, version.description, *keywords, *names]).lower()
