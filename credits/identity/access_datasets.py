"""Who may see and change datasets: the public reads what is published, members their drafts.

Anyone, signed in or not, reads published and deprecated versions and the
tombstones of taken-down ones. A project's members (while they hold the
researcher role) also read its drafts, and create, edit, publish and
deprecate its datasets. Ops read and do everything, and alone take a version
down. A draft the actor may not read looks exactly like a missing version.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, or_, select, true
from sqlalchemy.orm import Session

from credits.datasets.errors import DatasetForbidden, VersionNotFound
from credits.datasets.models import Dataset, DatasetVersion, VersionState
from credits.grants.models import Project
from credits.identity import rules
from credits.identity.actor import Actor
from credits.identity.models import Role


def visible_versions(actor: Actor | None) -> ColumnElement[bool]:
    """The dataset versions ``actor`` may read; None is an anonymous visitor."""
    public = DatasetVersion.state != VersionState.DRAFT.value
    if actor is None:
        return public
    if actor.has_role(Role.OPS):
        return true()
    projects = rules.my_project_ids(actor)
    if projects is None:
        return public
    mine = select(Dataset.id).where(Dataset.project_id.in_(projects))
    return or_(public, DatasetVersion.dataset_id.in_(mine))


@rules.per_holder
def managed_projects(actor: Actor) -> ColumnElement[bool]:
    """The projects whose datasets the actor may create and change."""
    if actor.has_role(Role.OPS):
        return true()
    projects = rules.my_project_ids(actor)
    if projects is None:
        return false()
    return Project.id.in_(projects)


def can_manage_project_datasets(session: Session, actor: Actor, project_id: int) -> bool:
    """True when the project exists and the actor is ops or one of its members."""
    return rules.readable(session, Project, project_id, managed_projects(actor))


def can_read_dataset(session: Session, actor: Actor | None, dataset_id: int) -> bool:
    """True when the dataset has a version the actor may read: a dataset whose every
    version is a draft they may not read looks exactly like a missing one."""
    found = session.scalar(
        select(DatasetVersion.id)
        .where(DatasetVersion.dataset_id == dataset_id, visible_versions(actor))
        .limit(1)
    )
    return found is not None


def can_take_down(actor: Actor) -> bool:
    """Taking a version down is for ops alone."""
    return actor.has_role(Role.OPS)


def load_version(
    session: Session, actor: Actor | None, version_id: int, *, lock: bool = False
) -> DatasetVersion:
    """The version when the actor may read it; raises VersionNotFound otherwise.

    ``lock`` takes the row with SELECT … FOR UPDATE (PostgreSQL), so that two
    writers to one version go one after the other.
    """
    query = select(DatasetVersion).where(DatasetVersion.id == version_id, visible_versions(actor))
    if lock:
        query = query.with_for_update(of=DatasetVersion)
    version = session.scalar(query.execution_options(populate_existing=True))
    if version is None:
        raise VersionNotFound(f"no dataset version has the id {version_id}")
    return version


def require_manager(session: Session, actor: Actor, version: DatasetVersion) -> None:
    """Raises DatasetForbidden unless the actor manages the version's project."""
    if not can_manage_project_datasets(session, actor, version.dataset.project_id):
        raise DatasetForbidden("only the project's members or ops may change its datasets")
