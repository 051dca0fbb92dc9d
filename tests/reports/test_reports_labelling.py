"""Labelling spend by vendor, program and project, next to GPU spend: in the report
service, the funder dashboard, the CSV and `credits reports`, agreeing with the ledger."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
from click.testing import CliRunner
from labelling_world import LabellingWorld
from reports_world import CREDIT, ReportsWorld, award, build_reports_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.cli import main
from credits.db import utcnow
from credits.grants import funding
from credits.identity.models import Scope
from credits.labelling import deliveries, orders
from credits.labelling.label_schema import AnnotationValue
from credits.labelling.models import Adapter, Item, Resolution
from credits.ledger.models import AccountKind, Currency, Transfer, TransferKind
from credits.ledger.queries import get_account_by_code, project_sink_code, system_account_id
from credits.ledger.verify import verify_ledger
from credits.metering.ingest import ingest_batch
from credits.metering.schemas import UsageBatchIn
from credits.metering.settlement import settle_pending
from credits.reports.csv_export import COLUMNS, to_csv
from credits.reports.schemas import ProgramReport, ProjectReport
from credits.reports.service import program_report, project_report
from credits.settings import load_settings

LABEL_AWARD = 40 * CREDIT


@dataclass
class Spent:
    world: ReportsWorld
    label_account_id: int
    acme: int  # vendor ids
    inhouse: int


def _award_label_credits(session: Session, world: ReportsWorld) -> int:
    """The program funds labelling credits too and awards project A some; the account id."""
    funding.fund_program(
        session,
        program_id=world.program_id,
        currency=Currency.LABEL,
        amount_micro=200 * CREDIT,
        key="reports-fund-label",
        actor=world.funder,
        reason="FY27 labelling",
    )
    granted = award(
        session,
        world.a.researcher,
        world.funder,
        world.program_id,
        world.a.project_id,
        LABEL_AWARD,
        currency=Currency.LABEL.value,
    )
    return int(granted.allocations[0].account_id)


def _invoice_units(session: Session, lab: LabellingWorld, order_id: int, units: int) -> None:
    """The vendor's meter reports units through ingestion; settlement charges the order."""
    meter = lab.pi.model_copy(update={"scopes": frozenset({Scope.METER})})
    end = utcnow() - timedelta(minutes=1)
    record = {
        "source": "acme.example",
        "record_id": f"invoice-{order_id}",
        "project_id": lab.project_id,
        "labelling_order_id": order_id,
        "currency": "label",
        "quantity": units,
        "unit": "item",
        "start": (end - timedelta(hours=1)).isoformat(),
        "end": end.isoformat(),
    }
    batch = ingest_batch(
        session,
        UsageBatchIn(records=[record]),
        actor=meter,
        late_window=timedelta(hours=72),
        now=utcnow(),
        max_gpus=8,
    )
    assert batch.accepted == 1, batch.results
    assert settle_pending(session, now=utcnow()).records == 1


@pytest.fixture
def spent(session: Session, joined_session_factory: sessionmaker[Session]) -> Spent:
    """Project A: GPU jobs, an invoice order that ran 2 items past its quote (6 credits
    captured, 4 overage) and an in-house order refunded 1 of its 2 credits. Project B:
    GPU jobs only."""
    world = build_reports_world(joined_session_factory)
    world.a.submit(gpus=2, duration=600)
    world.b.submit(gpus=4, duration=300)
    world.run_until_done()
    account_id = _award_label_credits(session, world)
    lab = LabellingWorld(
        world.a.researcher,
        world.a.researcher,
        world.a.researcher,
        world.a.ops,
        [],
        world.a.project_id,
        account_id,
        vendor=None,  # type: ignore[arg-type]
    )
    acme = lab.add_vendor(session, "Acme Labels", adapter=Adapter.INVOICE, price=2 * CREDIT)
    inhouse = lab.add_vendor(session, "Ice lab annotators")
    invoiced = lab.placed(session, items=3, redundancy=1, vendor_id=acme.id)
    _invoice_units(session, lab, invoiced.id, 5)
    orders.accept_order(session, order_id=invoiced.id, actor=lab.pi)
    own = lab.placed(session, items=2, redundancy=1, vendor_id=inhouse.id)
    for item in session.scalars(select(Item).where(Item.order_id == own.id)):
        deliveries.record_delivery(
            session,
            order_id=own.id,
            item_id=item.id,
            annotator_ref="user:7",
            value=AnnotationValue(labels=["positive"]),
            seconds=9.0,
            delivery_key=f"d{item.id}",
            actor=lab.ops,
        )
    orders.dispute_order(session, order_id=own.id, actor=lab.pi, reason="one is wrong")
    orders.resolve_dispute(
        session,
        order_id=own.id,
        resolution=Resolution.REFUNDED,
        actor=lab.ops,
        note="one mislabelled",
        refund_micro=CREDIT,
    )
    session.flush()
    return Spent(world, account_id, acme.id, inhouse.id)


def _ledger_sum(session: Session, kind: TransferKind, **where: int) -> int:
    query = select(func.coalesce(func.sum(Transfer.amount), 0)).where(
        Transfer.kind == kind.value, Transfer.currency == Currency.LABEL.value
    )
    for column, value in where.items():
        query = query.where(getattr(Transfer, column) == value)
    return int(session.scalar(query) or 0)


def _check_labelling(session: Session, spent: Spent, report: ProgramReport | ProjectReport) -> None:
    world = spent.world
    vendors = {line.vendor: line for line in report.labelling_by_vendor}
    acme, own = vendors["Acme Labels"], vendors["Ice lab annotators"]
    assert (acme.orders, acme.captured, acme.overage, acme.refunded, acme.spent) == (
        1,
        6 * CREDIT,
        4 * CREDIT,
        0,
        10 * CREDIT,
    )
    assert (own.orders, own.captured, own.overage, own.refunded, own.spent) == (
        1,
        2 * CREDIT,
        0,
        CREDIT,
        CREDIT,
    )
    assert {(line.vendor, line.project_id, line.program_id) for line in report.labelling} == {
        ("Acme Labels", world.a.project_id, world.program_id),
        ("Ice lab annotators", world.a.project_id, world.program_id),
    }
    # The labelling figures are the ledger's: captures out of the label allocation,
    # overage into the project's label usage sink, refunds adjusted back in.
    sink = get_account_by_code(
        session, code=project_sink_code(world.a.project_id, Currency.LABEL)
    ).id
    overage_account = system_account_id(session, AccountKind.OVERAGE, Currency.LABEL)
    captured = _ledger_sum(session, TransferKind.CAPTURE, debit_account_id=spent.label_account_id)
    overage = _ledger_sum(
        session, TransferKind.GRANT, debit_account_id=overage_account, credit_account_id=sink
    )
    refunded = _ledger_sum(session, TransferKind.ADJUST, credit_account_id=spent.label_account_id)
    assert sum(line.captured for line in report.labelling) == captured == 8 * CREDIT
    assert sum(line.overage for line in report.labelling) == overage == 4 * CREDIT
    assert sum(line.refunded for line in report.labelling) == refunded == CREDIT
    [label] = [b for b in report.balances if b.currency is Currency.LABEL]
    assert (label.used, label.overage, label.adjusted) == (captured, overage, refunded)
    assert verify_ledger(session).ok


def _spend(report: ProgramReport | ProjectReport, project_id: int) -> tuple[int, int, int]:
    [line] = [line for line in report.spend if line.project_id == project_id]
    return line.gpu_used, line.gpu_spent, line.labelling_spent


def test_a_program_report_shows_labelling_spend_by_vendor_next_to_gpu_spend(
    session: Session, spent: Spent
) -> None:
    world = spent.world
    report = program_report(session, world.program_id, world.clock())

    _check_labelling(session, spent, report)
    gpu = {line.project_id: line.used for line in report.by_project if line.currency.value == "gpu"}
    gpu_used_a, gpu_spent_a, label_a = _spend(report, world.a.project_id)
    assert gpu_used_a == gpu[world.a.project_id] > 0 and gpu_spent_a >= gpu_used_a
    assert label_a == 11 * CREDIT
    assert _spend(report, world.b.project_id)[2] == 0
    # The invoice record is the order's spend, never counted again as outside usage.
    assert all(line.currency.value == "gpu" for line in report.usage)


def test_a_project_report_counts_the_same_labelling_spend(session: Session, spent: Spent) -> None:
    world = spent.world
    report = project_report(session, world.a.project_id, world.clock())
    _check_labelling(session, spent, report)
    assert all(line.currency.value == "gpu" for line in report.usage)
    assert _spend(report, world.a.project_id)[2] == 11 * CREDIT


def test_the_csv_adds_labelling_rows_and_keeps_its_columns(session: Session, spent: Spent) -> None:
    world = spent.world
    rows = list(
        csv.DictReader(
            io.StringIO(to_csv(program_report(session, world.program_id, world.clock())))
        )
    )
    assert list(rows[0])[:13] == [
        "section",
        "currency",
        "flavour",
        "month",
        "date",
        "project_id",
        "institution",
        "allocation_id",
        "account_id",
        "job_id",
        "state",
        "metric",
        "value",
    ]
    spent_by_vendor = {
        row["vendor"]: row["value"]
        for row in rows
        if row["section"] == "labelling_vendor" and row["metric"] == "spent_credits"
    }
    assert spent_by_vendor == {"Acme Labels": "10", "Ice lab annotators": "1"}
    [labelling_spent] = [
        row
        for row in rows
        if row["section"] == "spend"
        and row["metric"] == "labelling_spent_credits"
        and row["project_id"] == str(world.a.project_id)
    ]
    assert labelling_spent["value"] == "11"
    program_rows = {row["program_id"] for row in rows if row["section"] == "labelling"}
    assert program_rows == {str(world.program_id)}


def test_credits_reports_prints_labelling_spend_and_its_json(
    spent: Spent, joined_session_factory: sessionmaker[Session]
) -> None:
    world = spent.world
    run = CliRunner().invoke
    obj = {"session_factory": joined_session_factory}
    table = run(main, ["reports", "program", str(world.program_id)], obj=obj)
    as_json = run(main, ["reports", "program", str(world.program_id), "--json"], obj=obj)
    as_csv = run(main, ["reports", "project", str(world.a.project_id), "--csv"], obj=obj)

    assert table.exit_code == 0, table.output
    assert "spend by project (credits)" in table.output
    assert "labelling spend by vendor: Acme Labels 10 (1 orders), Ice lab annotators 1" in (
        table.output
    )
    body = json.loads(as_json.output)
    assert {v["vendor"]: v["spent"] for v in body["labelling_by_vendor"]} == {
        "Acme Labels": 10 * CREDIT,
        "Ice lab annotators": CREDIT,
    }
    assert as_csv.output.splitlines()[0] == ",".join(COLUMNS)
    assert ",labelling_vendor," not in as_csv.output.splitlines()[0]
    assert "labelling_vendor," in as_csv.output


def test_the_funder_dashboard_shows_labelling_spend_next_to_gpu_spend(
    spent: Spent, joined_session_factory: sessionmaker[Session]
) -> None:
    world = spent.world
    app = create_app(
        load_settings(), session_factory=joined_session_factory, executor=world.a.executor
    )
    client = app.test_client()
    assert world.funder.user_id is not None
    sign_in_as(client, world.funder.user_id)

    page = client.get(f"/funder/programs/{world.program_id}/dashboard")

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="spend"' in html and "Labelling spent" in html
    assert 'data-testid="labelling-by-vendor"' in html
    vendor_table = html.split('data-testid="labelling-by-vendor"', 1)[1].split("</table>", 1)[0]
    assert "Acme Labels" in vendor_table and "Ice lab annotators" in vendor_table
    assert '<td class="num">10</td>' in vendor_table  # Acme's spend, in credits
    spend_table = html.split('data-testid="spend"', 1)[1].split("</table>", 1)[0]
    assert "Ice" in spend_table and '<td class="num">11</td>' in spend_table
    csv_text = client.get(f"/funder/programs/{world.program_id}/report.csv").get_data(as_text=True)
    assert "labelling_vendor" in csv_text and "Acme Labels" in csv_text
