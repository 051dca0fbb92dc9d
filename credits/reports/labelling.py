"""Labelling spend of a report's scope, by vendor, program and project, and next to GPU spend.

An order's captures are read per allocation account from the ledger's hold
parts of its hold, so they split exactly over the programs whose allocations
paid and add up to the label allocations' ``used``, as a job's captures add up
to the GPU allocations'. Overage and refunds are not drawn from an allocation:
they count where a refund goes (:func:`credits.labelling.settlement.refund`
adjusts the account of the hold's first part), with that account's program.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.labelling.models import Order, Vendor
from credits.labelling.settlement import order_reference
from credits.ledger.models import Account, AccountKind, Currency, HoldPart, Transfer, TransferKind
from credits.reports.activity import Activity
from credits.reports.figures import AccountFigures, month_of
from credits.reports.schemas import LabellingSpendLine, SpendLine, VendorSpendLine


@dataclass
class _Sum:
    orders: set[int] = field(default_factory=set)
    captured: int = 0
    overage: int = 0
    refunded: int = 0

    def add(self, other: _Sum) -> None:
        self.orders |= other.orders
        self.captured += other.captured
        self.overage += other.overage
        self.refunded += other.refunded

    @property
    def spent(self) -> int:
        return self.captured + self.overage - self.refunded


_Key = tuple[int, str, int, int | None]  # vendor id, vendor name, project id, program id


@dataclass
class LabellingFigures:
    lines: list[LabellingSpendLine]
    vendors: list[VendorSpendLine]
    # Orders whose overage this scope counts (their hold's first part is in it).
    overage_orders: set[int]


def labelling_figures(session: Session, accounts: dict[int, AccountFigures]) -> LabellingFigures:
    """What the orders whose holds drew on ``accounts`` charged to those accounts."""
    sums, overage_orders = _load(session, accounts)
    vendors: dict[tuple[str, int], _Sum] = defaultdict(_Sum)
    for (vendor_id, vendor, _, _), total in sums.items():
        vendors[(vendor, vendor_id)].add(total)
    lines = [
        LabellingSpendLine(
            vendor_id=vendor_id,
            vendor=vendor,
            project_id=project_id,
            program_id=program_id,
            **_figures(total),
        )
        for (vendor_id, vendor, project_id, program_id), total in sorted(
            sums.items(), key=lambda item: (item[0][1], item[0][2], item[0][3] or 0)
        )
    ]
    return LabellingFigures(
        lines=lines,
        vendors=[
            VendorSpendLine(vendor_id=vendor_id, vendor=vendor, **_figures(total))
            for (vendor, vendor_id), total in sorted(vendors.items())
        ],
        overage_orders=overage_orders,
    )


def _figures(total: _Sum) -> dict[str, int]:
    return {
        "orders": len(total.orders),
        "captured": total.captured,
        "overage": total.overage,
        "refunded": total.refunded,
        "spent": total.spent,
    }


def _load(
    session: Session, accounts: dict[int, AccountFigures]
) -> tuple[dict[_Key, _Sum], set[int]]:
    sums: dict[_Key, _Sum] = defaultdict(_Sum)
    overage_orders: set[int] = set()
    if not accounts:
        return sums, overage_orders
    drawing = select(HoldPart.hold_key).where(HoldPart.account_id.in_(list(accounts)))
    rows = session.execute(
        select(
            Order.id,
            Order.project_id,
            Order.overage_micro,
            Order.refunded_micro,
            Vendor.id.label("vendor_id"),
            Vendor.name,
            HoldPart.part,
            HoldPart.account_id,
            HoldPart.captured,
        )
        .join(Vendor, Vendor.id == Order.vendor_id)
        .join(HoldPart, HoldPart.hold_key == Order.hold_key)
        .where(Order.hold_key.in_(drawing))
        .order_by(Order.id, HoldPart.part)
    ).all()
    for row in rows:
        account = accounts.get(row.account_id)
        if account is None:
            continue
        line = sums[(row.vendor_id, row.name, row.project_id, account.program_id)]
        line.orders.add(row.id)
        line.captured += int(row.captured)
        if row.part == 0:
            line.overage += int(row.overage_micro)
            line.refunded += int(row.refunded_micro)
            overage_orders.add(row.id)
    return sums, overage_orders


def overage_months(session: Session, order_ids: Collection[int]) -> Iterator[tuple[str, str, int]]:
    """The overage the orders booked, as (currency, month, amount) read from the ledger:
    the overage account's grants that name the order (:mod:`credits.labelling.settlement`)."""
    if not order_ids:
        return
    overage = select(Account.id).where(Account.kind == AccountKind.OVERAGE.value)
    rows = session.execute(
        select(Transfer.currency, Transfer.amount, Transfer.created_at).where(
            Transfer.kind == TransferKind.GRANT.value,
            Transfer.debit_account_id.in_(overage),
            Transfer.reference.in_([order_reference(order_id) for order_id in sorted(order_ids)]),
        )
    ).all()
    for row in rows:
        yield row.currency, month_of(row.created_at), int(row.amount)


def spend_by_project(
    accounts: Iterable[AccountFigures],
    activity: Activity,
    labelling: Iterable[LabellingSpendLine],
    titles: dict[int, str],
) -> list[SpendLine]:
    """GPU spend (captures from GPU allocations, plus overage) and labelling spend per project."""
    gpu_used: dict[int, int] = defaultdict(int)
    for account in accounts:
        if account.currency == Currency.GPU.value:
            gpu_used[account.project_id] += account.used
    label: dict[int, int] = defaultdict(int)
    for line in labelling:
        label[line.project_id] += line.spent
    overage = activity.overage_by_project
    gpu = Currency.GPU.value
    projects = sorted(set(gpu_used) | set(label) | {pid for c, pid in overage if c == gpu})
    return [
        SpendLine(
            project_id=pid,
            title=titles.get(pid, ""),
            gpu_used=gpu_used[pid],
            gpu_overage=overage.get((gpu, pid), 0),
            gpu_spent=gpu_used[pid] + overage.get((gpu, pid), 0),
            labelling_spent=label[pid],
        )
        for pid in projects
    ]
