"""Real commits on PostgreSQL: concurrent publishes of one draft publish it once, and
concurrent labelling acceptances into one dataset share one new draft."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from datasets_world import ENERGY, DatasetsWorld, build_world
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from test_ledger_concurrency import committed_postgres, run_together

from credits.audit.models import AuditEvent
from credits.datasets import publishing, queries
from credits.datasets.errors import VersionStateConflict
from credits.datasets.models import DatasetVersion, VersionState
from credits.datasets.schemas import VersionOut
from credits.db import make_session_factory, run_in_transaction, session_scope, utcnow
from credits.labelling import delivery
from credits.labelling.models import Order

pytestmark = pytest.mark.postgres

__all__ = ["committed_postgres"]  # the fixture, imported for pytest to find

THREADS = 8


def _complete_draft(
    committed_postgres: tuple[str, Engine],
) -> tuple[sessionmaker[Session], DatasetsWorld, VersionOut]:
    """A committed world with a draft ready to publish."""
    factory = make_session_factory(committed_postgres[1])
    with session_scope(factory) as session:
        world = build_world(session)
        draft = world.draft(session)
        world.complete(session, draft.id)
    return factory, world, draft


def test_racing_publishes_of_one_draft_publish_it_once(
    committed_postgres: tuple[str, Engine],
) -> None:
    factory, world, draft = _complete_draft(committed_postgres)

    def publish(_: int) -> Any:
        return run_in_transaction(
            factory,
            lambda session: publishing.publish_version(
                session, version_id=draft.id, actor=world.pi, energy=ENERGY
            ),
        )

    results = run_together(THREADS, publish)

    published = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(published) == 1
    assert all(isinstance(error, VersionStateConflict) for error in refused), refused
    with session_scope(factory) as session:
        version = queries.get_version(session, None, draft.id)
        assert version.manifest_sha256 == published[0].manifest_sha256
        events = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.event_type == "dataset.version.published",
                AuditEvent.subject_id == version.public_id,
            )
        )
        assert events == 1


def test_racing_acceptances_into_one_dataset_share_one_new_draft(
    committed_postgres: tuple[str, Engine],
) -> None:
    factory, world, first = _complete_draft(committed_postgres)
    with session_scope(factory) as session:
        publishing.publish_version(session, version_id=first.id, actor=world.pi, energy=ENERGY)
    # What _draft_for reads of an accepted order that targets the dataset.
    order = cast(
        Order, SimpleNamespace(target_dataset_id=first.dataset_id, project_id=None, title="")
    )

    def draft_for(_: int) -> Any:
        return run_in_transaction(
            factory,
            lambda session: delivery._draft_for(session, order, world.pi, utcnow(), None),
        )

    results = run_together(THREADS, draft_for)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(set(results)) == 1
    with session_scope(factory) as session:
        drafts = session.scalar(
            select(func.count())
            .select_from(DatasetVersion)
            .where(
                DatasetVersion.dataset_id == first.dataset_id,
                DatasetVersion.state == VersionState.DRAFT.value,
            )
        )
        assert drafts == 1
