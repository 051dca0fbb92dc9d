"""Optional DOIs for dataset versions, registered through DataCite's REST API.

Off unless every ``CREDITS_DATACITE_*`` setting is given
(:func:`doi_registrar_from_settings` answers None otherwise and the services
make no HTTP request at all). When on, each version gets the DOI
``<prefix>/<version UUID>``, chosen by us, so that every request is
idempotent: a retried reservation finds its DOI taken and reads it back, a
retried publication updates the same DOI, and nothing ever mints a second one.

When DataCite hears of what (the services call the :class:`DoiHook`):

- **First save** (a new dataset's draft, a new version): the DOI row is
  written, pending, inside the transaction; no HTTP. After the commit the
  caller reserves the draft DOI (``POST /dois``) with :func:`finish_after_commit`;
  if DataCite is down, the sweep does it later.
- **Publish**: inside the transaction, after the version is frozen and before
  the commit, the DOI is reserved if it is not yet and made findable
  (``PUT /dois/{doi}`` with ``event: publish``, the landing page's URL and the
  full DataCite metadata). A refusal or an outage raises :class:`DoiError`,
  the transaction rolls back and the version stays an editable draft: a
  published version never carries metadata DataCite refused, which it could
  no longer fix. (Were the commit to fail after DataCite accepted, the DOI is
  findable ahead of the version; publishing again updates the same DOI.)
- **Deprecate, take down**: the row is marked pending in the transaction,
  DataCite is told after the commit; these never wait on or fail because of
  DataCite (a take-down is a legal act). The sweep retries what is left.
- **Take-down** keeps the DOI: DataCite never deletes a findable or registered
  DOI, and a DOI must keep resolving. The metadata is updated (a ``Withdrawn``
  date with the reason) and the DOI is hidden (``event: hide``: registered,
  out of DataCite's search and public listings) while its URL stays the
  version's landing page, which is now the tombstone.

:func:`sync_dois` finishes every pending row (``credits datasets sync-dois``,
the embedded chores and Celery beat run it), backing off per row after each
failure. The client (:mod:`credits.datasets.datacite`) retries requests on 429
(honouring ``Retry-After``), 5xx and transport errors with a bounded exponential
backoff; a 4xx refusal raises :class:`DoiRefused` naming DataCite's own error titles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from credits.datasets import exports
from credits.datasets.datacite import DataCiteClient, DoiError, DoiRefused, RetryPolicy
from credits.datasets.models import DatasetDoi, DatasetVersion, DoiState, VersionState
from credits.datasets.queries import render_version
from credits.datasets.urls import version_url
from credits.db import run_in_transaction, utcnow
from credits.settings import Settings

logger = logging.getLogger(__name__)
# After a failed sync a row waits 1, 2, 4 … minutes, at most an hour, before the next.
SWEEP_BACKOFF = timedelta(minutes=1)
SWEEP_BACKOFF_MAX = timedelta(hours=1)


class DoiHook(Protocol):
    """What the dataset services tell the DOI registrar (none when DOIs are off)."""

    def on_saved(self, session: Session, version: DatasetVersion) -> None:
        """A version's first save: its DOI is chosen and its reservation is due."""

    def on_published(self, session: Session, version: DatasetVersion) -> None:
        """A version was just published (flushed, not committed): make its DOI findable
        now or raise DoiError, which must roll the publication back."""

    def on_changed(self, session: Session, version: DatasetVersion) -> None:
        """A version was deprecated or taken down: DataCite's copy is due an update."""


@dataclass(frozen=True)
class SyncReport:
    """What a sweep did: DOIs brought up to date, DOIs that failed (with why), and how
    many rows are still pending after it (failed, backing off, or past its limit)."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    pending: int = 0


@dataclass
class DoiRegistrar:
    """The :class:`DoiHook` that registers DOIs at DataCite for this installation."""

    client: DataCiteClient
    prefix: str
    base_url: str
    publisher: str
    funder_name: str

    def doi_for(self, version: DatasetVersion) -> str:
        return f"{self.prefix}/{version.public_id}".lower()

    def on_saved(self, session: Session, version: DatasetVersion) -> None:
        if session.get(DatasetDoi, version.id) is None:
            session.add(DatasetDoi(version_id=version.id, doi=self.doi_for(version), pending=True))
            session.flush()

    def on_published(self, session: Session, version: DatasetVersion) -> None:
        record = self._record_for(session, version)
        self.sync(session, record)

    def on_changed(self, session: Session, version: DatasetVersion) -> None:
        # A version published before DOIs were turned on has no DOI, and gets none
        # now: a DOI registered for a tombstone or a deprecation would be forever.
        record = session.get(DatasetDoi, version.id, with_for_update=True, populate_existing=True)
        if record is None:
            return
        record.pending = True
        record.next_attempt_at = None
        session.flush()

    def _record_for(self, session: Session, version: DatasetVersion) -> DatasetDoi:
        """The version's DOI row, locked; one is made for a version saved before DOIs
        were turned on."""
        record = session.get(DatasetDoi, version.id, with_for_update=True, populate_existing=True)
        if record is None:
            record = DatasetDoi(version_id=version.id, doi=self.doi_for(version), pending=True)
            session.add(record)
            session.flush()
        return record

    def attributes(self, session: Session, version: DatasetVersion, doi: str) -> dict[str, Any]:
        """The full DataCite metadata of the version, its landing page as ``url``."""
        document = exports.datacite(
            render_version(session, version),
            base_url=self.base_url,
            publisher=self.publisher,
            funder_name=self.funder_name,
            doi=doi,
        )
        return document | {"url": version_url(self.base_url, version.public_id)}

    def sync(self, session: Session, record: DatasetDoi, *, now: datetime | None = None) -> None:
        """Brings DataCite's copy of the DOI up to date with the version, or raises
        DoiError after recording the failure on the row (the caller decides whether
        that record survives: a publication rolls back, the sweep commits it)."""
        at = now or utcnow()
        try:
            self._sync(session, record)
        except DoiError as error:
            record.pending = True
            record.attempts += 1
            record.last_error = str(error)[:2000]
            record.next_attempt_at = at + min(
                SWEEP_BACKOFF * 2 ** (record.attempts - 1), SWEEP_BACKOFF_MAX
            )
            session.flush()
            raise
        record.pending = False
        record.attempts = 0
        record.last_error = None
        record.next_attempt_at = None
        record.synced_at = at
        session.flush()

    def _sync(self, session: Session, record: DatasetDoi) -> None:
        version = record.version
        if record.datacite_state is None:
            record.datacite_state = self.client.reserve(record.doi).state
        target, event = _wanted(VersionState(version.state), DoiState(record.datacite_state))
        if target is None:
            return
        attributes = self.attributes(session, version, record.doi)
        try:
            result = self.client.update(record.doi, attributes, event=event)
        except DoiRefused as refused:
            # A draft DOI deleted at DataCite (drafts may be): reserve it again, once.
            if refused.extra.get("datacite_status") != 404 or record.datacite_state != "draft":
                raise
            self.client.reserve(record.doi)
            result = self.client.update(record.doi, attributes, event=event)
        if result.state != target.value:
            raise DoiError(
                f"DataCite left {record.doi} {result.state}, not {target.value} as asked"
            )
        record.datacite_state = result.state


def _wanted(version: VersionState, current: DoiState) -> tuple[DoiState | None, str | None]:
    """The DOI state a version's state calls for, and the event that gets there."""
    if version is VersionState.DRAFT:
        return None, None  # the reserved draft is all a draft version needs
    if version is VersionState.TAKEN_DOWN:
        event = {DoiState.DRAFT: "register", DoiState.FINDABLE: "hide"}.get(current)
        return DoiState.REGISTERED, event
    return DoiState.FINDABLE, None if current is DoiState.FINDABLE else "publish"


def sync_dois(
    session: Session,
    registrar: DoiRegistrar,
    *,
    version_ids: list[int] | None = None,
    limit: int = 100,
    now: datetime | None = None,
) -> SyncReport:
    """Finishes pending DOI work: reservations, publications, metadata updates.

    Also takes up any DOI out of step with its version (a version published or
    taken down without the hook: its DOI is made findable or registered).
    Rows that failed recently wait out their backoff (unless named in
    ``version_ids``); each failure is recorded on its row and reported, never
    raised, so one refusal does not hold up the others.
    """
    at = now or utcnow()
    public = [VersionState.PUBLISHED.value, VersionState.DEPRECATED.value]
    out_of_step = or_(
        DatasetDoi.pending.is_(True),
        and_(
            DatasetVersion.state.in_(public),
            or_(DatasetDoi.datacite_state.is_(None), DatasetDoi.datacite_state != "findable"),
        ),
        and_(
            DatasetVersion.state == VersionState.TAKEN_DOWN.value,
            or_(DatasetDoi.datacite_state.is_(None), DatasetDoi.datacite_state != "registered"),
        ),
    )
    query = (
        select(DatasetDoi)
        .join(DatasetVersion, DatasetVersion.id == DatasetDoi.version_id)
        .where(out_of_step)
    )
    if version_ids is not None:
        query = query.where(DatasetDoi.version_id.in_(version_ids))
    else:
        query = query.where(
            or_(DatasetDoi.next_attempt_at.is_(None), DatasetDoi.next_attempt_at <= at)
        )
    rows = session.scalars(
        query.order_by(DatasetDoi.version_id)
        .limit(limit)
        .with_for_update(of=DatasetDoi, skip_locked=True)
    ).all()
    done: list[str] = []
    failed: dict[str, str] = {}
    for record in rows:
        try:
            registrar.sync(session, record, now=at)
        except DoiError as error:
            logger.warning("DOI %s not synced: %s", record.doi, error)
            failed[record.doi] = str(error)
        else:
            done.append(record.doi)
    pending = session.scalar(
        select(func.count()).select_from(DatasetDoi).where(DatasetDoi.pending.is_(True))
    )
    return SyncReport(done=done, failed=failed, pending=pending or 0)


def finish_after_commit(
    factory: Callable[[], Session], registrar: DoiRegistrar | None, version_id: int
) -> SyncReport | None:
    """After the commit of a first save, deprecation or take-down: tells DataCite now.

    Never raises DoiError (the action is done; what failed stays pending for the
    sweep); None when DOIs are off.
    """
    if registrar is None:
        return None
    return run_in_transaction(
        factory, lambda session: sync_dois(session, registrar, version_ids=[version_id])
    )


def doi_of(session: Session, version_id: int) -> tuple[str, str] | None:
    """The version's DOI and its state at DataCite, once it resolves (findable or
    registered); None before that or without DOIs."""
    record = session.get(DatasetDoi, version_id)
    if record is None or record.datacite_state not in {"findable", "registered"}:
        return None
    return record.doi, record.datacite_state


def doi_registrar_from_settings(
    settings: Settings,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DoiRegistrar | None:
    """The registrar the settings describe; None when DOIs are off (the default)."""
    if not settings.dois_enabled:
        return None
    client = DataCiteClient(
        settings.datacite_url,
        repository_id=settings.datacite_repository_id,
        password=settings.datacite_password.get_secret_value(),
        retry=retry,
        sleep=sleep,
    )
    return DoiRegistrar(
        client=client,
        prefix=settings.datacite_prefix,
        base_url=settings.public_url,
        publisher=settings.instance_name,
        funder_name=settings.instance_name,
    )
