"""Usage from meters outside the platform: a batch in, one verdict per record out.

Each record is judged on its own (accepted, duplicate, or rejected with a
reason) and the accepted ones are stored as pending usage, all in the
caller's transaction: a batch is applied whole or, on a refusal of the batch
itself, not at all. A record that claims more GPU time than its window and
GPUs hold (:mod:`credits.metering.plausibility`) refuses the whole batch: a
meter that miscounts one record is not trusted with the others. A record is
unique by (source, record_id); the same record again is a duplicate, and the
same id with a different payload is rejected, so a meter may resend a batch as
often as it likes. A record naming a labelling order (the invoice adapter) is
judged against that order and priced at its quote
(:mod:`credits.labelling.invoice`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Table, select, text, tuple_
from sqlalchemy.orm import Session

from credits.audit.service import canonical_json
from credits.db import utcnow
from credits.identity.access import can_read_project
from credits.identity.actor import Actor
from credits.identity.errors import MissingScope
from credits.identity.models import Scope
from credits.labelling.invoice import (
    InvoiceOrder,
    InvoiceRecordRefused,
    check_record,
    load_invoice_order,
)
from credits.ledger import batch_write as bulk
from credits.ledger.journal import MAX_AMOUNT
from credits.ledger.models import Account, Currency
from credits.ledger.queries import project_sink_code
from credits.metering.errors import ImplausibleUsage
from credits.metering.intervals import MICROSECONDS, MICROSECONDS_PER_HOUR
from credits.metering.models import RecordStatus, UsageRecord, UsageUnit
from credits.metering.plausibility import (
    Implausible,
    check_gpu_credits,
    check_gpu_time,
    check_gpus,
    gpu_us,
)
from credits.metering.schemas import (
    RecordOutcome,
    RecordResult,
    UsageBatchIn,
    UsageBatchOut,
    UsageRecordIn,
)
from credits.pool.models import GpuFlavour, RateVersion

# A meter's clock may run a little ahead of ours.
CLOCK_SKEW = timedelta(minutes=5)
# The platform's own meters (credits.jobs) write under these sources.
RESERVED_SOURCE_PREFIX = "credits."
MAX_EVIDENCE_BYTES = 16 * 1024
_RESULTS = TypeAdapter(list[RecordResult])


class Rejected(Exception):
    """One record cannot be accepted; the message says why."""


def ingest_batch(
    session: Session,
    batch: UsageBatchIn,
    *,
    actor: Actor,
    late_window: timedelta,
    now: datetime,
    max_gpus: int,
) -> UsageBatchOut:
    """Judges and stores a batch; ``max_gpus`` is the most GPUs one record may cover.

    Raises MissingScope without the ``meter`` scope, and ImplausibleUsage, storing
    nothing, when any record is implausible.
    """
    require_meter_token(actor)
    judge = _Judge(session, actor, late_window, now, max_gpus)
    parsed = [_parse(raw) for raw in batch.records]
    # Only records that passed validation are looked up: the database may refuse a
    # raw value (PostgreSQL a NUL in text) and with it the whole batch.
    judge.prefetch([record for record in parsed if isinstance(record, UsageRecordIn)])
    verdicts = [
        judge.record(index, raw, record)
        for index, (raw, record) in enumerate(zip(batch.records, parsed, strict=True))
    ]
    if judge.implausible:
        raise ImplausibleUsage(
            f"{len(judge.implausible)} record(s) claim more GPU time than their window and "
            "GPUs hold; nothing of this batch was stored",
            errors=[
                {"loc": ["records", index, field], "msg": message, "type": "implausible_usage"}
                for index, field, message in judge.implausible
            ],
        )
    _insert(session, list(judge.added.values()))
    # Validated in one call: every field was made here, and one call for the batch
    # costs a fifth of building its thousand results one by one.
    results = _RESULTS.validate_python([judge.verdict(verdict) for verdict in verdicts])
    counts = dict.fromkeys(RecordOutcome, 0)
    for result in results:
        counts[result.outcome] += 1
    return UsageBatchOut(
        accepted=counts[RecordOutcome.ACCEPTED],
        duplicates=counts[RecordOutcome.DUPLICATE],
        rejected=counts[RecordOutcome.REJECTED],
        results=results,
    )


def require_meter_token(actor: Actor) -> None:
    """Usage is reported with a token that names the ``meter`` scope (or ``admin``):
    a login or an unscoped token, which carry every other right, may not charge.

    This is the one exception to "a token with no scopes may do everything its
    user may": a meter's credential should do nothing else, and a person's
    everyday token should not be able to charge by accident.
    """
    scopes = actor.scopes
    if scopes is None or not ({Scope.METER, Scope.ADMIN} & scopes):
        raise MissingScope(
            "usage is reported with an API token that names the 'meter' scope; a login "
            "or a token without scopes may not report it. Create one with "
            "`credits tokens create --email YOU --scope meter`",
            scope=Scope.METER.value,
        )


class _Judge:
    """Judges one batch, reading what it needs once (known records, projects,
    usage sinks, rates) so a batch of a thousand costs a handful of queries."""

    def __init__(
        self, session: Session, actor: Actor, late_window: timedelta, now: datetime, max_gpus: int
    ):
        self.session = session
        self.actor = actor
        self.late_window = late_window
        self.now = now
        self.max_gpus = max_gpus
        self.implausible: list[tuple[int, str, str]] = []
        self.projects: dict[int, bool] = {}
        self.sinks: dict[tuple[int, Currency], bool] = {}
        self.rates: dict[str, list[tuple[datetime, int, int]]] = {}
        self.known: dict[tuple[str, str], tuple[str, int | None, int]] = {}
        # A record accepted in this batch: the index of its verdict, by its key.
        self.accepted: dict[tuple[str, str], int] = {}
        # A repeat within the batch: the index of the copy accepted before it.
        self.copy_of: dict[int, int] = {}
        self.orders: dict[int, InvoiceOrder | None] = {}
        self.added: dict[int, dict[str, Any]] = {}

    def prefetch(self, records: list[UsageRecordIn]) -> None:
        """Reads the stored records among the batch's (validated) keys, in one statement."""
        keys = {(record.source, record.record_id) for record in records}
        if not keys:
            return
        for source, record_id, digest, row_id, amount in _known_records(self.session, keys):
            self.known[(source, record_id)] = (digest, row_id, amount)

    def record(
        self, index: int, raw: Mapping[str, Any], record: UsageRecordIn | str
    ) -> dict[str, Any]:
        """The verdict's fields (a RecordResult is built once the ids are known);
        ``record`` is the validated record, or why validation refused it."""
        source = raw.get("source") if isinstance(raw.get("source"), str) else None
        record_id = raw.get("record_id") if isinstance(raw.get("record_id"), str) else None
        result: dict[str, Any] = {
            "index": index,
            "source": source,
            "record_id": record_id,
            "outcome": RecordOutcome.REJECTED,
        }
        if isinstance(record, str):
            return result | {"reason": record}
        try:
            return self._judge(index, result, record)
        except Rejected as refusal:
            return result | {"reason": str(refusal)}
        except Implausible as refusal:
            self.implausible.append((index, refusal.field, str(refusal)))
            return result | {"reason": str(refusal)}

    def verdict(self, result: dict[str, Any]) -> dict[str, Any]:
        """The verdict's fields, naming the stored row of an accepted record (or, for a
        repeat within the batch, of the copy accepted)."""
        index = result["index"]
        row = self.added.get(self.copy_of.get(index, index))
        if row is not None:
            result["id"] = row["id"]
        return result

    def _judge(self, index: int, result: dict[str, Any], record: UsageRecordIn) -> dict[str, Any]:
        digest = _digest(record)
        key = (record.source, record.record_id)
        known = self.known.get(key)
        if known is not None:
            if known[0] != digest:
                raise Rejected("this record_id was already used with a different payload")
            if key in self.accepted:
                # Its id is taken only when the batch is stored: verdict() names it.
                self.copy_of[index] = self.accepted[key]
            return result | {
                "outcome": RecordOutcome.DUPLICATE,
                "id": known[1],
                "amount_micro": known[2],
            }
        self._check(record)
        if record.labelling_order_id is None:
            amount, rate_id = self._price(record)
            self._check_plausible(record, amount)
        else:
            amount, rate_id = self._price_order(record, record.labelling_order_id), None
            self._require_sink(record)
        if amount > MAX_AMOUNT:
            raise Rejected(f"the amount, {amount} micro-credits, is over the ledger's limit")
        self.added[index] = {
            "source": record.source,
            "record_id": record.record_id,
            "job_id": None,
            "labelling_order_id": record.labelling_order_id,
            "project_id": record.project_id,
            "currency": record.currency.value,
            "unit": record.unit.value,
            "quantity_micro": int(record.quantity * MICROSECONDS),
            "amount_micro": amount,
            "rate_version_id": rate_id,
            "resource": record.resource,
            "started_at": record.start,
            "ended_at": record.end,
            "evidence_json": (
                canonical_json(record.evidence) if record.evidence is not None else None
            ),
            "request_hash": digest,
            "status": RecordStatus.PENDING.value,
            "captured_micro": 0,
            "overage_micro": 0,
            "settled_at": None,
            "error": None,
        }
        # A second copy later in the same batch is a duplicate of this one.
        self.known[key] = (digest, None, amount)
        self.accepted[key] = index
        return result | {"outcome": RecordOutcome.ACCEPTED, "amount_micro": amount}

    def _check(self, record: UsageRecordIn) -> None:
        if record.source.startswith(RESERVED_SOURCE_PREFIX):
            raise Rejected(f"sources starting with {RESERVED_SOURCE_PREFIX!r} are the platform's")
        if record.end < record.start:
            raise Rejected("end is before start")
        if record.end > self.now + CLOCK_SKEW:
            raise Rejected("end is in the future")
        if record.end < self.now - self.late_window:
            hours = self.late_window.total_seconds() / 3600
            raise Rejected(f"too late: usage must be reported within {hours:g} hours of its end")
        if record.evidence is not None and len(json.dumps(record.evidence)) > MAX_EVIDENCE_BYTES:
            raise Rejected(f"evidence is over {MAX_EVIDENCE_BYTES} bytes")
        if not self._may_meter(record.project_id):
            raise Rejected(f"no project has the id {record.project_id}")
        if record.labelling_order_id is None:
            self._require_sink(record)

    def _require_sink(self, record: UsageRecordIn) -> None:
        if not self._has_sink(record.project_id, record.currency):
            raise Rejected(f"project {record.project_id} has no {record.currency.value} allocation")

    def _price_order(self, record: UsageRecordIn, order_id: int) -> int:
        """The amount of units delivered for a labelling order, at the order's quote."""
        if order_id not in self.orders:
            self.orders[order_id] = load_invoice_order(self.session, order_id)
        order = self.orders[order_id]
        if order is None:
            raise Rejected(f"no labelling order has the id {order_id}")
        try:
            return check_record(
                order,
                project_id=record.project_id,
                currency=record.currency,
                unit=record.unit.value,
                units_micro=int(record.quantity * MICROSECONDS),
            )
        except InvoiceRecordRefused as refusal:
            raise Rejected(str(refusal)) from refusal

    def _check_plausible(self, record: UsageRecordIn, amount: int) -> None:
        """Raises Implausible unless the record fits its window and GPUs."""
        gpus = record.gpus or 1
        check_gpus(gpus, max_gpus=self.max_gpus)
        start, end = record.start, record.end
        if record.unit.is_gpu_time:
            check_gpu_time(gpu_us(record.quantity, record.unit), start=start, end=end, gpus=gpus)
        elif record.currency is Currency.GPU:
            rate = self._bounding_rate(record.resource, start)
            check_gpu_credits(
                amount, start=start, end=end, gpus=gpus, micro_credits_per_gpu_hour=rate
            )

    def _bounding_rate(self, flavour: str | None, at: datetime) -> int:
        """The named flavour's rate at ``at`` or, with none named, the dearest in force."""
        if flavour:
            return self._rate(flavour, at)[1]
        names = self.session.scalars(select(GpuFlavour.name).order_by(GpuFlavour.name))
        in_force = [self._rate_or_none(name, at) for name in names]
        rates = [rate for rate in in_force if rate is not None]
        if not rates:
            raise Implausible(
                "quantity", f"no GPU rate was in force at {at.isoformat()} to bound GPU credits"
            )
        return max(rates)

    def _rate_or_none(self, flavour: str, at: datetime) -> int | None:
        try:
            return self._rate(flavour, at)[1]
        except Rejected:
            return None

    def _may_meter(self, project_id: int) -> bool:
        if project_id not in self.projects:
            self.projects[project_id] = can_read_project(self.session, self.actor, project_id)
        return self.projects[project_id]

    def _has_sink(self, project_id: int, currency: Currency) -> bool:
        key = (project_id, currency)
        if key not in self.sinks:
            code = project_sink_code(project_id, currency)
            found = self.session.scalar(select(Account.id).where(Account.code == code))
            self.sinks[key] = found is not None
        return self.sinks[key]

    def _price(self, record: UsageRecordIn) -> tuple[int, int | None]:
        if record.unit is UsageUnit.CREDIT:
            return int(record.quantity * MICROSECONDS), None
        if record.unit.is_labelling:
            raise Rejected(
                f"{record.unit.value} units are reported for a labelling order: "
                "name it in labelling_order_id"
            )
        if record.currency is not Currency.GPU:
            raise Rejected(f"{record.unit.value} usage is charged in gpu credits")
        if not record.resource:
            raise Rejected("GPU usage names its flavour in resource")
        rate_id, per_hour = self._rate(record.resource, record.start)
        seconds = record.quantity * (3600 if record.unit is UsageUnit.GPU_HOUR else 1)
        gpu_us = int(seconds * MICROSECONDS)
        amount = -(-(gpu_us * per_hour) // MICROSECONDS_PER_HOUR)
        return int(amount), rate_id

    def _rate(self, flavour: str, at: datetime) -> tuple[int, int]:
        """The version in force at ``at``: (id, micro-credits per GPU-hour)."""
        if flavour not in self.rates:
            self.rates[flavour] = [
                (row.effective_from, row.id, row.micro_credits_per_gpu_hour)
                for row in self.session.execute(
                    select(
                        RateVersion.effective_from,
                        RateVersion.id,
                        RateVersion.micro_credits_per_gpu_hour,
                    )
                    .join(GpuFlavour, GpuFlavour.id == RateVersion.flavour_id)
                    .where(GpuFlavour.name == flavour)
                    .order_by(RateVersion.effective_from.desc())
                )
            ]
        for starts, rate_id, per_hour in self.rates[flavour]:
            if starts <= at:
                return rate_id, per_hour
        if not self.rates[flavour]:
            raise Rejected(f"no GPU flavour is named {flavour!r} (or it has no rate)")
        raise Rejected(f"GPU flavour {flavour!r} had no rate in force at {at.isoformat()}")


_KNOWN_COLUMNS = (
    UsageRecord.source,
    UsageRecord.record_id,
    UsageRecord.request_hash,
    UsageRecord.id,
    UsageRecord.amount_micro,
)
# PostgreSQL: the batch's keys as two arrays, two parameters however many records.
_PG_KNOWN = select(*_KNOWN_COLUMNS).where(
    text(
        "(source, record_id) IN (SELECT * FROM unnest(CAST(:sources AS TEXT[]),"
        " CAST(:record_ids AS TEXT[])))"
    )
)


def _known_records(session: Session, keys: set[tuple[str, str]]) -> Iterable[Any]:
    """The stored records among ``keys`` (source, record_id), in one statement."""
    if bulk.is_postgres(session):
        ordered = sorted(keys)
        return session.execute(
            _PG_KNOWN,
            {
                "sources": [source for source, _ in ordered],
                "record_ids": [record_id for _, record_id in ordered],
            },
        )
    key = tuple_(UsageRecord.source, UsageRecord.record_id)
    return session.execute(select(*_KNOWN_COLUMNS).where(key.in_(sorted(keys))))


def _insert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Stores the accepted records with one multi-row insert (COPY on PostgreSQL), their
    ids taken first so each verdict names its record."""
    table = cast(Table, UsageRecord.__table__)
    created = utcnow()
    for row, record_id in zip(rows, bulk.new_ids(session, table, len(rows)), strict=True):
        row["id"] = record_id
        row["created_at"] = created
    bulk.insert_rows(session, table, rows)


def _parse(raw: Mapping[str, Any]) -> UsageRecordIn | str:
    """The record validated, or why it is not valid."""
    try:
        return UsageRecordIn.model_validate(raw)
    except ValidationError as error:
        return _first_error(error)


def _digest(record: UsageRecordIn) -> str:
    # A record that names no ``gpus`` or labelling order hashes as it did before
    # those fields existed.
    unnamed = {name for name in ("gpus", "labelling_order_id") if getattr(record, name) is None}
    body = record.model_dump(mode="json", exclude=unnamed or None)
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _first_error(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
