"""GPU flavours and effective-dated rates at the service layer, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.service import list_events
from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger.errors import InvalidAmount
from credits.pool import service
from credits.pool.errors import (
    FlavourExists,
    FlavourNotFound,
    InvalidFlavour,
    InvalidTime,
    NoRateInForce,
    PoolChangeForbidden,
    RateExists,
    RateInPast,
)
from credits.pool.models import RateVersion
from credits.pool.schemas import FlavourOut, RateOut

SYSTEM = Actor.system("test")
OPS = Actor(label="user:1", user_id=1, email="ops@example.org", roles=frozenset({Role.OPS}))
FUNDER = Actor(label="user:2", user_id=2, email="f@example.org", roles=frozenset({Role.FUNDER}))
T0 = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _flavour(session: Session, name: str = "a100-80gb", **overrides: Any) -> FlavourOut:
    values: dict[str, Any] = {
        "name": name,
        "node_label_value": "NVIDIA-A100-SXM4-80GB",
        "gpu_memory_gb": 80,
        "gpus_per_node": 8,
        "actor": OPS,
    }
    return service.add_flavour(session, **(values | overrides))


def _rate(
    session: Session,
    micro: int,
    starts: datetime,
    *,
    now: datetime = T0,
    flavour: str = "a100-80gb",
) -> RateOut:
    return service.set_rate(
        session,
        flavour=flavour,
        credits_per_gpu_hour_micro=micro,
        effective_from=starts,
        actor=OPS,
        now=now,
    )


def _counts(session: Session) -> tuple[int, int]:
    """(rate versions, audit events): what a refused call must leave unchanged."""
    rates = session.scalar(select(func.count()).select_from(RateVersion))
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    return int(rates or 0), int(events or 0)


def _in_force(session: Session, at: datetime) -> int:
    return service.rate_in_force(session, flavour="a100-80gb", at=at).micro_credits_per_gpu_hour


# Flavours.


def test_ops_add_a_flavour_and_it_is_audited(any_session: Session) -> None:
    flavour = _flavour(any_session, description="  training  ")

    assert service.get_flavour(any_session, name="a100-80gb") == flavour
    assert (flavour.gpu_memory_gb, flavour.gpus_per_node) == (80, 8)
    assert flavour.description == "training"
    [event] = list_events(any_session, subject_type="gpu_flavour", subject_id=str(flavour.id))
    assert (event.event_type, event.actor) == ("pool.flavour_added", "user:1")


def test_flavours_are_listed_by_name(any_session: Session) -> None:
    _flavour(any_session, "h100-80gb")
    _flavour(any_session, "a100-40gb", gpu_memory_gb=40)

    assert [f.name for f in service.list_flavours(any_session)] == ["a100-40gb", "h100-80gb"]


def test_a_duplicate_flavour_name_is_a_conflict_and_saves_nothing(any_session: Session) -> None:
    _flavour(any_session)
    before = _counts(any_session)

    with pytest.raises(FlavourExists, match="already exists") as raised:
        _flavour(any_session, gpu_memory_gb=40)

    assert raised.value.status == 409
    assert _counts(any_session) == before
    assert len(service.list_flavours(any_session)) == 1


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"name": "A100"}, InvalidFlavour),
        ({"name": "-a100"}, InvalidFlavour),
        ({"name": "a"}, InvalidFlavour),
        ({"name": "a_100"}, InvalidFlavour),
        ({"name": "a" * 64}, InvalidFlavour),
        ({"node_label_value": ""}, InvalidFlavour),
        ({"node_label_value": "NVIDIA A100"}, InvalidFlavour),
        ({"node_label_value": "x" * 64}, InvalidFlavour),
        ({"gpu_memory_gb": 0}, InvalidFlavour),
        ({"gpu_memory_gb": 80.0}, InvalidFlavour),
        ({"gpus_per_node": 65}, InvalidFlavour),
        ({"gpus_per_node": True}, InvalidFlavour),
        ({"description": "x" * 2001}, InvalidInput),
    ],
)
def test_invalid_flavours_are_refused_and_save_nothing(
    any_session: Session, overrides: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _flavour(any_session, **overrides)

    assert service.list_flavours(any_session) == []
    assert _counts(any_session) == (0, 0)


def test_only_ops_or_the_platform_change_the_pool(any_session: Session) -> None:
    with pytest.raises(PoolChangeForbidden, match="only ops"):
        _flavour(any_session, actor=FUNDER)
    _flavour(any_session, actor=SYSTEM)

    with pytest.raises(PoolChangeForbidden):
        service.set_rate(
            any_session,
            flavour="a100-80gb",
            credits_per_gpu_hour_micro=1,
            effective_from=T0,
            actor=FUNDER,
            now=T0,
        )
    assert service.list_rates(any_session) == []


def test_unknown_flavours_are_not_found(any_session: Session) -> None:
    with pytest.raises(FlavourNotFound, match="no GPU flavour is named 'v100'"):
        service.get_flavour(any_session, name="v100")
    with pytest.raises(FlavourNotFound):
        _rate(any_session, 1, T0, flavour="v100")
    with pytest.raises(FlavourNotFound):
        service.rate_in_force(any_session, flavour="v100", at=T0)
    with pytest.raises(FlavourNotFound):
        service.list_rates(any_session, flavour="v100")


# Rates.


def test_the_rate_in_force_is_the_latest_version_at_or_before_the_time(
    any_session: Session,
) -> None:
    _flavour(any_session)
    _rate(any_session, 1_000_000, T0)
    _rate(any_session, 3_000_000, T0 + 7 * DAY)
    _rate(any_session, 2_000_000, T0 + DAY)

    with pytest.raises(NoRateInForce, match="no rate in force"):
        service.rate_in_force(any_session, flavour="a100-80gb", at=T0 - timedelta(microseconds=1))
    assert _in_force(any_session, T0) == 1_000_000
    assert _in_force(any_session, T0 + DAY - timedelta(microseconds=1)) == 1_000_000
    assert _in_force(any_session, T0 + DAY) == 2_000_000
    assert _in_force(any_session, T0 + 3 * DAY) == 2_000_000
    assert _in_force(any_session, T0 + 365 * DAY) == 3_000_000


def test_a_new_rate_never_changes_what_an_earlier_time_resolves_to(any_session: Session) -> None:
    _flavour(any_session)
    _rate(any_session, 1_000_000, T0)
    _rate(any_session, 2_000_000, T0 + DAY)
    later = T0 + 2 * DAY
    probes = [T0 + step * HOUR for step in range(0, 49, 7)] + [later]
    resolved = [service.rate_in_force(any_session, flavour="a100-80gb", at=t) for t in probes]

    _rate(any_session, 5_000_000, later, now=later)
    _rate(any_session, 9_000_000, later + HOUR, now=later)

    again = [service.rate_in_force(any_session, flavour="a100-80gb", at=t) for t in probes[:-1]]
    assert again == resolved[:-1]
    assert _in_force(any_session, later) == 5_000_000


def test_a_rate_in_force_is_stamped_by_its_version_id(any_session: Session) -> None:
    _flavour(any_session)
    first = _rate(any_session, 1_000_000, T0)

    found = service.rate_in_force(any_session, flavour="a100-80gb", at=T0 + HOUR)

    assert (found.id, found.in_force, found.flavour) == (first.id, True, "a100-80gb")


def test_a_rate_in_the_past_is_refused_naming_both_times_and_saves_nothing(
    any_session: Session,
) -> None:
    _flavour(any_session)
    before = _counts(any_session)

    with pytest.raises(RateInPast) as raised:
        _rate(any_session, 1_000_000, T0 - 2 * HOUR)

    assert raised.value.status == 422
    assert "2029-12-31T22:00:00+00:00" in raised.value.detail
    assert "2030-01-01T00:00:00+00:00" in raised.value.detail
    assert _counts(any_session) == before


def test_a_start_just_before_now_is_taken_as_now(any_session: Session) -> None:
    _flavour(any_session)

    rate = _rate(any_session, 1_000_000, T0 - timedelta(seconds=59), now=T0)

    assert (rate.effective_from, rate.in_force) == (T0, True)


@pytest.mark.parametrize(
    ("before_now", "taken"),
    [(timedelta(seconds=60), True), (timedelta(seconds=60, microseconds=1), False)],
)
def test_the_grace_before_now_ends_at_exactly_sixty_seconds(
    any_session: Session, before_now: timedelta, taken: bool
) -> None:
    _flavour(any_session)
    if taken:
        assert _rate(any_session, 1_000_000, T0 - before_now, now=T0).effective_from == T0
        return
    with pytest.raises(RateInPast):
        _rate(any_session, 1_000_000, T0 - before_now, now=T0)


def test_a_start_moved_up_to_now_cannot_jump_over_a_scheduled_version(
    any_session: Session,
) -> None:
    _flavour(any_session)
    _rate(any_session, 2_000_000, T0 - timedelta(seconds=10), now=T0 - timedelta(seconds=20))
    before = _counts(any_session)

    with pytest.raises(RateInPast, match="cannot be slipped in ahead"):
        _rate(any_session, 1_000_000, T0 - timedelta(seconds=30), now=T0)

    assert _counts(any_session) == before


def test_a_refused_jump_names_the_asked_start_the_real_now_and_the_version_passed(
    any_session: Session,
) -> None:
    _flavour(any_session)
    passed = T0 - timedelta(seconds=10)
    _rate(any_session, 2_000_000, passed, now=T0 - timedelta(seconds=20))
    _rate(any_session, 3_000_000, T0 + 365 * DAY)
    asked = T0 - timedelta(seconds=30)

    with pytest.raises(RateInPast) as raised:
        _rate(any_session, 1_000_000, asked, now=T0)

    assert raised.value.extra == {
        "effective_from": asked.isoformat(),
        "now": T0.isoformat(),
        "version_from": passed.isoformat(),
    }
    assert passed.isoformat() in raised.value.detail
    assert (T0 + 365 * DAY).isoformat() not in raised.value.detail


@pytest.mark.parametrize(
    "before_now",
    [timedelta(0), timedelta(microseconds=1), timedelta(seconds=5), timedelta(seconds=60)],
)
def test_a_rate_from_now_is_taken_ahead_of_a_version_set_for_later(
    any_session: Session, before_now: timedelta
) -> None:
    _flavour(any_session)
    _rate(any_session, 1_000_000, T0 - DAY, now=T0 - DAY)
    scheduled = _rate(any_session, 3_000_000, T0 + 365 * DAY, now=T0 - DAY)

    rate = _rate(any_session, 2_000_000, T0 - before_now, now=T0)

    assert (rate.effective_from, rate.in_force) == (T0, True)
    assert _in_force(any_session, T0 - timedelta(microseconds=1)) == 1_000_000
    assert _in_force(any_session, T0) == 2_000_000
    assert _in_force(any_session, T0 + 365 * DAY - timedelta(microseconds=1)) == 2_000_000
    later = service.rate_in_force(any_session, flavour="a100-80gb", at=T0 + 365 * DAY)
    assert later.id == scheduled.id


def test_a_second_version_at_the_same_time_is_a_conflict(any_session: Session) -> None:
    _flavour(any_session)
    _rate(any_session, 1_000_000, T0 + DAY)
    before = _counts(any_session)

    with pytest.raises(RateExists) as raised:
        _rate(any_session, 2_000_000, T0 + DAY)

    assert raised.value.status == 409
    assert _counts(any_session) == before
    assert _in_force(any_session, T0 + DAY) == 1_000_000


def test_losing_a_race_for_the_same_start_is_a_conflict_not_a_crash(
    any_session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    _flavour(any_session)
    _rate(any_session, 1_000_000, T0 + DAY)
    # As if another transaction inserted the same start after our check.
    monkeypatch.setattr(service, "_version_at", lambda *_: None)

    with pytest.raises(RateExists):
        _rate(any_session, 2_000_000, T0 + DAY)

    assert _in_force(any_session, T0 + DAY) == 1_000_000  # the session is still usable


@pytest.mark.parametrize("micro", [0, -1, 2.5, True, "1000000", 2**53 + 1])
def test_a_rate_is_a_positive_integer_of_micro_credits(any_session: Session, micro: Any) -> None:
    _flavour(any_session)

    with pytest.raises(InvalidAmount):
        _rate(any_session, micro, T0 + DAY)

    assert _counts(any_session)[0] == 0


def test_naive_times_are_refused(any_session: Session) -> None:
    _flavour(any_session)
    naive = datetime(2031, 1, 1)  # noqa: DTZ001 - the point of the test

    with pytest.raises(InvalidTime, match="needs a timezone"):
        _rate(any_session, 1, naive)
    with pytest.raises(InvalidTime):
        service.rate_in_force(any_session, flavour="a100-80gb", at=naive)


def test_rates_in_other_timezones_are_stored_in_utc(any_session: Session) -> None:
    _flavour(any_session)
    plus_two = timezone(timedelta(hours=2))

    rate = _rate(any_session, 1, datetime(2030, 1, 2, 2, tzinfo=plus_two))

    assert rate.effective_from == datetime(2030, 1, 2, tzinfo=UTC)
    assert service.list_rates(any_session, now=T0)[0].effective_from.utcoffset() == timedelta(0)


def test_rate_history_is_newest_first_with_the_version_in_force_flagged(
    any_session: Session,
) -> None:
    _flavour(any_session)
    _flavour(any_session, "h100-80gb", node_label_value="NVIDIA-H100-80GB-HBM3")
    _rate(any_session, 1_000_000, T0)
    _rate(any_session, 2_000_000, T0 + DAY)
    _rate(any_session, 3_000_000, T0 + 7 * DAY)
    _rate(any_session, 4_000_000, T0 + HOUR, flavour="h100-80gb")

    history = service.list_rates(any_session, now=T0 + 2 * DAY)

    assert [(r.flavour, r.micro_credits_per_gpu_hour, r.in_force) for r in history] == [
        ("a100-80gb", 3_000_000, False),
        ("a100-80gb", 2_000_000, True),
        ("h100-80gb", 4_000_000, True),
        ("a100-80gb", 1_000_000, False),
    ]
    only = service.list_rates(any_session, flavour="h100-80gb", now=T0)
    assert [(r.micro_credits_per_gpu_hour, r.in_force) for r in only] == [(4_000_000, False)]


def test_setting_a_rate_is_audited(any_session: Session) -> None:
    _flavour(any_session)

    rate = service.set_rate(
        any_session,
        flavour="a100-80gb",
        credits_per_gpu_hour_micro=2_500_000,
        effective_from=T0 + DAY,
        actor=OPS,
        reason="  new hardware contract ",
        now=T0,
    )

    assert rate.reason == "new hardware contract"
    [event] = list_events(any_session, subject_type="gpu_rate_version", subject_id=str(rate.id))
    assert event.event_type == "pool.rate_set"
    assert '"micro_credits_per_gpu_hour":2500000' in event.canonical_json
    assert '"effective_from":"2030-01-02T00:00:00+00:00"' in event.canonical_json


# The database's own guards.


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE pool_rate_versions SET micro_credits_per_gpu_hour = 1 WHERE id = :id",
        "UPDATE pool_rate_versions SET effective_from = effective_from WHERE id = :id",
        "DELETE FROM pool_rate_versions WHERE id = :id",
    ],
)
def test_the_database_refuses_to_change_or_delete_a_rate_version(
    any_session: Session, statement: str
) -> None:
    _flavour(any_session)
    rate = _rate(any_session, 2_000_000, T0)

    with pytest.raises(IntegrityError, match="append-only"), any_session.begin_nested():
        any_session.execute(text(statement), {"id": rate.id})

    assert _in_force(any_session, T0) == 2_000_000


@pytest.mark.parametrize(
    ("name", "memory", "gpus"),
    [("Bad-Name", 80, 8), ("-bad", 80, 8), ("a_b", 80, 8), ("ok-name", 0, 8), ("ok-name", 80, 65)],
)
def test_the_database_checks_flavour_columns(
    any_session: Session, name: str, memory: int, gpus: int
) -> None:
    insert = text(
        "INSERT INTO pool_flavours (name, node_label_value, gpu_memory_gb, gpus_per_node,"
        " created_at) VALUES (:name, 'X', :memory, :gpus, CURRENT_TIMESTAMP)"
    )

    with pytest.raises(IntegrityError), any_session.begin_nested():
        any_session.execute(insert, {"name": name, "memory": memory, "gpus": gpus})


def test_the_database_refuses_a_rate_of_zero(any_session: Session) -> None:
    flavour = _flavour(any_session)
    insert = text(
        "INSERT INTO pool_rate_versions (flavour_id, micro_credits_per_gpu_hour,"
        " effective_from, created_at, actor) VALUES (:id, 0, CURRENT_TIMESTAMP,"
        " CURRENT_TIMESTAMP, 'test')"
    )

    with pytest.raises(IntegrityError), any_session.begin_nested():
        any_session.execute(insert, {"id": flavour.id})


# Pricing.


@pytest.mark.parametrize(
    ("gpus", "seconds", "rate", "expected"),
    [
        (1, 3600, 2_500_000, 2_500_000),
        (8, 86_400, 2_500_000, 480_000_000),
        (1, 1, 1, 1),
        (1, 3599, 1, 1),
        (2, 1800, 3, 3),
        (1, 1, 3600, 1),
        (1, 1, 3601, 2),
    ],
)
def test_hold_amount_is_the_exact_cost_rounded_up(
    gpus: int, seconds: int, rate: int, expected: int
) -> None:
    assert (
        service.hold_amount(gpus=gpus, max_runtime_seconds=seconds, micro_credits_per_gpu_hour=rate)
        == expected
    )


positive = st.integers(min_value=1, max_value=10**9)


@given(gpus=st.integers(1, 4096), seconds=positive, rate=positive)
def test_hold_amount_covers_the_exact_cost_by_less_than_one_micro_credit(
    gpus: int, seconds: int, rate: int
) -> None:
    held = service.hold_amount(
        gpus=gpus, max_runtime_seconds=seconds, micro_credits_per_gpu_hour=rate
    )
    exact = Fraction(gpus * seconds * rate, 3600)

    assert exact <= held < exact + 1


@given(
    gpus=st.integers(1, 4096),
    seconds=positive,
    rate=positive,
    more=st.integers(0, 10**6),
    which=st.sampled_from(["gpus", "max_runtime_seconds", "micro_credits_per_gpu_hour"]),
)
def test_hold_amount_never_falls_when_an_argument_grows(
    gpus: int, seconds: int, rate: int, more: int, which: str
) -> None:
    arguments = {"gpus": gpus, "max_runtime_seconds": seconds, "micro_credits_per_gpu_hour": rate}
    grown = arguments | {which: arguments[which] + more}

    assert service.hold_amount(**grown) >= service.hold_amount(**arguments)


@pytest.mark.parametrize(
    "arguments",
    [
        {"gpus": 0, "max_runtime_seconds": 1, "micro_credits_per_gpu_hour": 1},
        {"gpus": 1, "max_runtime_seconds": -1, "micro_credits_per_gpu_hour": 1},
        {"gpus": 1, "max_runtime_seconds": 1, "micro_credits_per_gpu_hour": 1.5},
        {"gpus": True, "max_runtime_seconds": 1, "micro_credits_per_gpu_hour": 1},
    ],
)
def test_hold_amount_refuses_anything_but_positive_integers(arguments: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        service.hold_amount(**arguments)


@pytest.mark.postgres
def test_postgres_refuses_to_truncate_rate_versions(pg_session: Session) -> None:
    _flavour(pg_session)
    _rate(pg_session, 2_000_000, T0)

    # CASCADE gets past the foreign key from jobs; the trigger still refuses.
    with pytest.raises(IntegrityError, match="append-only"), pg_session.begin_nested():
        pg_session.execute(text("TRUNCATE pool_rate_versions CASCADE"))

    assert _in_force(pg_session, T0) == 2_000_000
