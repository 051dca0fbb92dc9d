"""The embedded profile's periodic chores, run by ``credits serve`` without Celery.

Production runs the same services from Celery beat (credits/worker.py); here a
thread of the web process calls them: mail from the outbox every minute, and
every hour the allocation expiry sweep, the daily digests and the nudges
(each is deduplicated per day, so running them hourly sends nothing twice);
every five minutes the release of annotators' lapsed leases (credits/labelling/queue.py);
every hour the removal of uploads left unfinished for a day (credits/storage/tidy.py);
with DOIs configured, every five minutes the DOI sweep (what DataCite could
not be told at the time); with Label Studio configured, every two minutes the
Label Studio sweep (credits/labelling/label_studio_loop.py); every 30 seconds
the transparency integrator (credits/transparency/integrator.py), which makes
the log's signing key under var/ on first use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from credits.datasets.doi import DoiRegistrar, doi_registrar_from_settings, sync_dois
from credits.db import run_in_transaction, utcnow
from credits.grants.allocations import expire_allocations
from credits.identity.actor import Actor
from credits.labelling.label_studio import LabelStudioClient, label_studio_client_from_settings
from credits.labelling.label_studio_loop import sweep_with_settings
from credits.labelling.queue import release_expired
from credits.notifications.events import queue_expiry_digests
from credits.notifications.mail import Mailer, make_mailer
from credits.notifications.service import send_pending
from credits.reports.nudges import run_nudges
from credits.settings import Settings
from credits.storage.tidy import remove_stale_uploads
from credits.transparency.integrator import integrate_all
from credits.transparency.service import ensure_embedded_key

logger = logging.getLogger(__name__)
SWEEPER = Actor.system("allocations-sweep")
MAIL_EVERY_S = 60.0
DAILY_WORK_EVERY_S = 3600.0
DOI_SYNC_EVERY_S = 300.0
LEASE_SWEEP_EVERY_S = 300.0
LABEL_STUDIO_SYNC_EVERY_S = 120.0
INTEGRATE_EVERY_S = 30.0


@dataclass
class Chores:
    """Remembers when each chore is next due; ``run_due`` runs those that are."""

    factory: Callable[[], Session]
    settings: Settings
    mailer: Mailer | None = None
    dois: DoiRegistrar | None = None
    label_studio: LabelStudioClient | None = None
    due: dict[str, float] = field(default_factory=dict)

    def run_due(self, now: float | None = None) -> list[str]:
        moment = time.monotonic() if now is None else now
        ran = []
        chores: list[tuple[str, float, Callable[[], None]]] = [
            ("mail", MAIL_EVERY_S, self._send_mail),
            ("leases", LEASE_SWEEP_EVERY_S, self._release_leases),
            ("daily", DAILY_WORK_EVERY_S, self._daily_work),
            ("transparency", INTEGRATE_EVERY_S, self._integrate),
            ("stale-uploads", DAILY_WORK_EVERY_S, self._remove_stale_uploads),
        ]
        if self.settings.dois_enabled:
            chores.append(("dois", DOI_SYNC_EVERY_S, self._sync_dois))
        if self.settings.label_studio_url:
            chores.append(("label-studio", LABEL_STUDIO_SYNC_EVERY_S, self._sync_label_studio))
        for name, every, chore in chores:
            if moment < self.due.get(name, 0.0):
                continue
            self.due[name] = moment + every
            try:
                chore()
                ran.append(name)
            except Exception:
                # A chore that fails now is tried again when next due.
                logger.exception("embedded chore %s failed", name)
        return ran

    def _send_mail(self) -> None:
        mailer = self.mailer = self.mailer or make_mailer(self.settings)
        # Its own short transactions: none is open while the mail server answers.
        send_pending(self.factory, mailer=mailer, limit=100, mail_from=self.settings.smtp_from)

    def _sync_dois(self) -> None:
        registrar = self.dois = self.dois or doi_registrar_from_settings(self.settings)
        if registrar is not None:
            run_in_transaction(self.factory, lambda session: sync_dois(session, registrar))

    def _sync_label_studio(self) -> None:
        self.label_studio = self.label_studio or label_studio_client_from_settings(self.settings)
        if self.label_studio is not None:
            # Each order commits on its own; failures are logged per order, not raised.
            sweep_with_settings(self.factory, self.label_studio, self.settings)

    def _release_leases(self) -> None:
        run_in_transaction(self.factory, lambda s: release_expired(s, now=utcnow()))

    def _remove_stale_uploads(self) -> None:
        remove_stale_uploads(self.settings)

    def _integrate(self) -> None:
        ensure_embedded_key(self.settings)
        integrate_all(self.factory, self.settings)

    def _daily_work(self) -> None:
        now = utcnow()
        run_in_transaction(self.factory, lambda s: expire_allocations(s, actor=SWEEPER, now=now))
        run_in_transaction(self.factory, lambda s: queue_expiry_digests(s, now=now))
        run_in_transaction(
            self.factory,
            lambda s: run_nudges(s, now=now, idle_percent=self.settings.idle_gpu_util_percent),
        )
