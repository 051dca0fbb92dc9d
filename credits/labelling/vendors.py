"""Labelling vendors and their effective-dated price sheets (ops only).

Like GPU rates, a price sheet is versioned and never edited: the version in
force at a moment is the one with the latest ``effective_from`` at or before
it, and no version may start in the past, so an order's quote always names
the version it was made at and a later price never changes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credits.audit.service import record_event
from credits.db import utcnow
from credits.errors import InvalidInput
from credits.id_text import id_from_text
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.labelling.errors import (
    LabellingForbidden,
    NoPriceSheet,
    VendorNotFound,
)
from credits.labelling.models import PriceSheet, Vendor
from credits.labelling.schemas import (
    PriceSheetIn,
    PriceSheetOut,
    QcOptions,
    VendorIn,
    VendorOut,
)
from credits.ledger import journal

# "Now" typed on a command line arrives a moment late; this close counts as now.
NOW_GRACE = timedelta(seconds=60)


def require_ops(actor: Actor, action: str) -> None:
    if not actor.has_role(Role.OPS):
        raise LabellingForbidden(f"only ops may {action}")


def add_vendor(session: Session, *, vendor: VendorIn, actor: Actor) -> VendorOut:
    """Adds a vendor; appends ``labelling.vendor_added``. Raises LabellingForbidden,
    InvalidInput (a taken name)."""
    require_ops(actor, "add labelling vendors")
    row = Vendor(
        name=vendor.name,
        adapter=vendor.adapter.value,
        task_kinds=[kind.value for kind in vendor.task_kinds],
        qc_options=vendor.qc_options.model_dump(),
        description=vendor.description,
        active=True,
        created_by=actor.label,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise InvalidInput(f"a vendor named {vendor.name!r} already exists") from None
    _audit(
        session,
        actor,
        event_type="labelling.vendor_added",
        subject_type="labelling_vendor",
        subject_id=row.id,
        data=vendor.model_dump(mode="json"),
    )
    return vendor_out(session, row)


def set_vendor_active(session: Session, *, vendor_id: int, active: bool, actor: Actor) -> VendorOut:
    """Retires a vendor (no new orders) or brings it back; open orders go on."""
    require_ops(actor, "retire or restore vendors")
    row = load_vendor(session, vendor_id)
    if row.active != active:
        row.active = active
        _audit(
            session,
            actor,
            event_type="labelling.vendor_active",
            subject_type="labelling_vendor",
            subject_id=row.id,
            data={"active": active},
        )
    return vendor_out(session, row)


def load_vendor(session: Session, vendor_id: int) -> Vendor:
    row = session.get(Vendor, vendor_id)
    if row is None:
        raise VendorNotFound(f"no labelling vendor has the id {vendor_id}")
    return row


def list_vendors(session: Session, *, include_retired: bool = False) -> list[VendorOut]:
    query = select(Vendor).order_by(Vendor.name)
    if not include_retired:
        query = query.where(Vendor.active.is_(True))
    return [vendor_out(session, row) for row in session.scalars(query)]


def get_vendor(session: Session, *, vendor_id: int) -> VendorOut:
    return vendor_out(session, load_vendor(session, vendor_id))


def find_vendor_id(session: Session, text: str) -> int:
    """The vendor ``text`` names by id or by name (any case), retired ones included.

    Raises VendorNotFound.
    """
    if (number := id_from_text(text)) is not None:
        return load_vendor(session, number).id
    wanted = text.strip().casefold()
    for vendor_id, name in session.execute(select(Vendor.id, Vendor.name)):
        if name.casefold() == wanted:
            return int(vendor_id)
    raise VendorNotFound(f"no labelling vendor is named {text!r}")


def vendor_out(session: Session, row: Vendor, *, now: datetime | None = None) -> VendorOut:
    sheet = _sheet_at(session, row.id, now or utcnow())
    return VendorOut(
        id=row.id,
        name=row.name,
        adapter=row.adapter,
        task_kinds=row.task_kinds,
        qc_options=QcOptions.model_validate(row.qc_options),
        description=row.description,
        active=row.active,
        created_at=row.created_at,
        price=None if sheet is None else sheet_out(sheet),
    )


def add_price_sheet(
    session: Session,
    *,
    vendor_id: int,
    sheet: PriceSheetIn,
    actor: Actor,
    now: datetime | None = None,
) -> PriceSheetOut:
    """Adds a price-sheet version from ``effective_from`` (now when omitted).

    A version may start before one already set for a later date: it is in force
    until that one starts (as a GPU rate is; no time already past changes).
    Appends ``labelling.price_set``. Raises LabellingForbidden, VendorNotFound,
    InvalidInput (a start in the past, or taken).
    """
    require_ops(actor, "set labelling prices")
    now = journal.check_time(now)
    vendor = load_vendor(session, vendor_id)
    starts = _start_time(sheet.effective_from or now, now)
    row = PriceSheet(
        vendor_id=vendor.id,
        unit=sheet.unit.value,
        micro_credits_per_unit=sheet.micro_credits_per_unit,
        fee_basis_points=sheet.fee_basis_points,
        effective_from=starts,
        actor=actor.label,
        reason=(sheet.reason or "").strip() or None,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise InvalidInput(
            f"{vendor.name!r} already has a price from {starts.isoformat()}"
        ) from None
    data = sheet.model_dump(mode="json") | {
        "effective_from": starts.isoformat(),
        "vendor_id": vendor.id,
    }
    _audit(
        session,
        actor,
        event_type="labelling.price_set",
        subject_type="labelling_price_sheet",
        subject_id=row.id,
        data=data,
    )
    return sheet_out(row)


def _start_time(effective_from: datetime, now: datetime) -> datetime:
    moment = journal.check_time(effective_from, name="effective_from")
    if moment >= now:
        return moment
    if now - moment <= NOW_GRACE:
        return now
    raise InvalidInput(
        f"a price cannot take effect in the past: effective_from {moment.isoformat()}"
        f" is before now ({now.isoformat()})"
    )


def price_sheet_in_force(session: Session, *, vendor_id: int, at: datetime) -> PriceSheet:
    """The vendor's version at ``at``. Raises VendorNotFound, NoPriceSheet."""
    vendor = load_vendor(session, vendor_id)
    sheet = _sheet_at(session, vendor.id, at)
    if sheet is None:
        raise NoPriceSheet(
            f"vendor {vendor.name!r} has no price in effect at {at.isoformat()}",
            vendor_id=vendor.id,
        )
    return sheet


def _sheet_at(session: Session, vendor_id: int, at: datetime) -> PriceSheet | None:
    return session.scalar(
        select(PriceSheet)
        .where(PriceSheet.vendor_id == vendor_id, PriceSheet.effective_from <= at)
        .order_by(PriceSheet.effective_from.desc())
        .limit(1)
    )


def list_price_sheets(session: Session, *, vendor_id: int) -> list[PriceSheetOut]:
    """Every version of a vendor's prices, newest first."""
    load_vendor(session, vendor_id)
    rows = session.scalars(
        select(PriceSheet)
        .where(PriceSheet.vendor_id == vendor_id)
        .order_by(PriceSheet.effective_from.desc())
    )
    return [sheet_out(row) for row in rows]


def sheet_out(row: PriceSheet) -> PriceSheetOut:
    return PriceSheetOut.model_validate(row, from_attributes=True)


def _audit(
    session: Session,
    actor: Actor,
    *,
    event_type: str,
    subject_type: str,
    subject_id: int,
    data: dict[str, Any],
) -> None:
    record_event(
        session,
        event_type=event_type,
        actor=actor.label,
        subject_type=subject_type,
        subject_id=str(subject_id),
        data=data,
    )
