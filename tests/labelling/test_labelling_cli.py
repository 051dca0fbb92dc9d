"""``credits labelling``: vendors, prices and orders as ops and researchers type them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from labelling_world import CREDIT, LabellingWorld, build_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.db import utcnow
from credits.labelling import vendors
from credits.labelling.models import Order, PriceSheet, Vendor
from credits.labelling.queries import get_order
from credits.settings import load_settings

Invoke = Callable[..., Result]


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    world = build_world(session, label_credits=10 * CREDIT)
    session.flush()
    return world


@pytest.fixture
def invoke(joined_session_factory: sessionmaker[Session]) -> Invoke:
    def run(*args: str) -> Result:
        return CliRunner().invoke(
            main,
            ["labelling", *args],
            obj={"session_factory": joined_session_factory, "settings": load_settings()},
        )

    return run


def _email(actor: object) -> str:
    email = getattr(actor, "email", None)
    assert isinstance(email, str)
    return email


def _refused(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_ops_add_a_vendor_and_a_price_in_credits(
    world: LabellingWorld, invoke: Invoke, session: Session
) -> None:
    ops = _email(world.ops)
    added = invoke(
        "vendors", "add", "Scale-ish", "--adapter", "invoice", "--kinds", "single_label,text_spans",
        "--max-redundancy", "3", "--no-gold", "--as", ops,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    priced = invoke(
        "prices", "set", "scale-ish", "--unit", "label", "--price", "0.05",
        "--fee-percent", "2.5", "--as", ops,
    )  # fmt: skip
    assert priced.exit_code == 0, priced.output
    assert "0.05 labelling credits per label + 2.5 %" in priced.output

    vendor = session.scalars(select(Vendor).where(Vendor.name == "Scale-ish")).one()
    sheet = session.scalars(select(PriceSheet).where(PriceSheet.vendor_id == vendor.id)).one()
    assert vendor.qc_options == {"gold_items": False, "max_redundancy": 3}
    assert (sheet.micro_credits_per_unit, sheet.fee_basis_points) == (50_000, 250)
    listed = invoke("vendors")
    assert "Scale-ish" in listed.output and "0.05 labelling credits per label" in listed.output
    as_json = json.loads(invoke("prices", str(vendor.id), "--json").output)
    assert [p["micro_credits_per_unit"] for p in as_json] == [50_000]


def test_a_price_from_a_later_time_is_listed_newest_first(
    world: LabellingWorld, invoke: Invoke
) -> None:
    later = (utcnow() + timedelta(days=3)).isoformat()
    set_later = invoke(
        "prices", "set", str(world.vendor.id), "--unit", "item", "--price", "2",
        "--from", later, "--reason", "new year", "--as", _email(world.ops),
    )  # fmt: skip
    assert set_later.exit_code == 0, set_later.output

    listed = invoke("prices", world.vendor.name)
    as_json = json.loads(invoke("prices", world.vendor.name, "--json").output)

    assert listed.exit_code == 0, listed.output
    assert "new year" in listed.output
    assert [p["micro_credits_per_unit"] for p in as_json] == [2 * CREDIT, CREDIT]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--price", "abc"), ("credits",)),
        (("--price", "1", "--fee-percent", "2.555"), ("two decimals",)),
        (("--price", "1", "--from", "2020-01-01T00:00:00Z"), ("past",)),
        (("--price", "1", "--from", "tomorrow"), ("effective_from",)),
    ],
)
def test_a_bad_price_is_one_line_and_changes_nothing(
    world: LabellingWorld,
    invoke: Invoke,
    session: Session,
    args: tuple[str, ...],
    words: tuple[str, ...],
) -> None:
    before = session.scalar(select(func.count()).select_from(PriceSheet))

    result = invoke(
        "prices", "set", str(world.vendor.id), "--unit", "item", *args, "--as", _email(world.ops)
    )

    _refused(result, *words)
    assert session.scalar(select(func.count()).select_from(PriceSheet)) == before


def test_a_researcher_may_not_add_a_vendor(world: LabellingWorld, invoke: Invoke) -> None:
    result = invoke(
        "vendors", "add", "Mine", "--adapter", "inhouse", "--kinds", "single_label",
        "--as", _email(world.pi),
    )  # fmt: skip

    _refused(result, "only ops")


def test_an_unknown_vendor_or_kind_is_one_line(world: LabellingWorld, invoke: Invoke) -> None:
    _refused(invoke("prices", "nobody"), "nobody")
    bad_kind = invoke(
        "vendors",
        "add",
        "X",
        "--adapter",
        "inhouse",
        "--kinds",
        "poetry",
        "--as",
        _email(world.ops),
    )
    _refused(bad_kind, "task_kinds")


def test_vendors_are_retired_and_restored(world: LabellingWorld, invoke: Invoke) -> None:
    retired = invoke("vendors", "retire", str(world.vendor.id), "--as", _email(world.ops))
    assert retired.exit_code == 0 and "retired" in retired.output
    assert "retired" in invoke("vendors").output
    restored = invoke("vendors", "restore", world.vendor.name, "--as", _email(world.ops))
    assert restored.exit_code == 0 and "restored" in restored.output


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    path.write_text("id,text,gold\nr1,Loved it.,positive\nr2,Hated it.,\nr3,Meh.,\n")
    return path


def _create(world: LabellingWorld, invoke: Invoke, path: Path, *extra: str) -> Result:
    return invoke(
        "create", str(path), "--project", str(world.project_id), "--vendor", world.vendor.name,
        "--title", "Sentiment", "--kind", "single_label", "--labels", "positive,negative,neutral",
        "--redundancy", "2", "--as", _email(world.pi), *extra,
    )  # fmt: skip


def test_an_order_goes_from_a_csv_to_settled(
    world: LabellingWorld, invoke: Invoke, session: Session, tmp_path: Path
) -> None:
    created = _create(world, invoke, _csv(tmp_path))
    assert created.exit_code == 0, created.output
    order = session.scalars(select(Order)).one()
    pi = _email(world.pi)

    quoted = invoke("quote", str(order.id), "--as", pi)
    placed = invoke("place", str(order.id), "--as", pi)
    world.deliver_all(session, order.id)
    accepted = invoke("accept", str(order.id), "--as", pi)
    shown = invoke("show", str(order.id))

    assert "quoted 6 labelling credits," in quoted.output  # 3 items x 2 annotators x 1 credit
    assert "placed" in placed.output
    assert "settled" in accepted.output
    assert "captured          6 labelling credits" in shown.output
    assert "3 (1 gold), 2 per item" in shown.output
    listed = json.loads(invoke("orders", "--json", "--status", "settled").output)
    assert [o["id"] for o in listed["items"]] == [order.id]


def test_a_bad_file_is_one_line_and_creates_nothing(
    world: LabellingWorld, invoke: Invoke, session: Session, tmp_path: Path
) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("id,text,gold\nr1,Fine.,sarcastic\n")

    _refused(_create(world, invoke, path), "line 2", "sarcastic")
    assert session.scalar(select(func.count()).select_from(Order)) == 0


def test_placing_without_credits_is_refused_with_the_amounts(
    world: LabellingWorld, invoke: Invoke, session: Session, tmp_path: Path
) -> None:
    vendor = world.add_vendor(session, "Dear", price=5 * CREDIT)
    session.flush()
    path = _csv(tmp_path)
    created = invoke(
        "create", str(path), "--project", str(world.project_id), "--vendor", str(vendor.id),
        "--title", "T", "--kind", "single_label", "--labels", "positive,negative,neutral",
        "--redundancy", "2", "--as", _email(world.pi),
    )  # fmt: skip
    order_id = session.scalars(select(Order.id)).one()
    invoke("quote", str(order_id), "--as", _email(world.pi))

    refused = invoke("place", str(order_id), "--as", _email(world.pi))

    assert created.exit_code == 0, created.output
    _refused(refused)
    assert get_order(session, world.ops, order_id=order_id).status == "quoted"
    assert world.available(session) == 10 * CREDIT


def test_cancel_and_a_refused_cancel(
    world: LabellingWorld, invoke: Invoke, session: Session
) -> None:
    order = world.draft(session)
    session.flush()

    cancelled = invoke("cancel", str(order.id), "--reason", "wrong file", "--as", _email(world.pi))
    again = invoke("cancel", str(order.id), "--as", _email(world.pi))

    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    _refused(again, "cancelled")


def test_ops_resolve_a_dispute_with_a_refund_in_credits(
    world: LabellingWorld, invoke: Invoke, session: Session
) -> None:
    order = world.placed(session, items=2, redundancy=2)
    world.deliver_all(session, order.id)
    pi, ops = _email(world.pi), _email(world.ops)
    disputed = invoke("dispute", str(order.id), "--reason", "labels look random", "--as", pi)
    assert disputed.exit_code == 0, disputed.output

    two_outcomes = invoke(
        "resolve", str(order.id), "--accept", "--refund", "1", "--note", "x", "--as", ops
    )
    none = invoke("resolve", str(order.id), "--note", "x", "--as", ops)
    by_researcher = invoke("resolve", str(order.id), "--accept", "--note", "x", "--as", pi)
    resolved = invoke("resolve", str(order.id), "--refund", "1.5", "--note", "redone", "--as", ops)

    _refused(two_outcomes, "exactly one")
    _refused(none, "exactly one")
    _refused(by_researcher, "only ops")
    assert resolved.exit_code == 0, resolved.output
    assert "settled" in resolved.output and "refunded 1.5" in resolved.output
    assert world.available(session) == 10 * CREDIT - 4 * CREDIT + 1_500_000


def test_show_of_a_missing_order_is_one_line(world: LabellingWorld, invoke: Invoke) -> None:
    _refused(invoke("show", "999999"), "999999")


def test_orders_are_filtered_by_vendor_name(
    world: LabellingWorld, invoke: Invoke, session: Session
) -> None:
    other = world.add_vendor(session, "Other shop")
    first = world.draft(session)
    world.draft(session, vendor_id=other.id)
    session.flush()

    listed = json.loads(invoke("orders", "--vendor", world.vendor.name, "--json").output)
    table = invoke("orders", "--project", str(world.project_id))

    assert [o["id"] for o in listed["items"]] == [first.id]
    assert "Other shop" in table.output
    assert vendors.get_vendor(session, vendor_id=other.id).active
