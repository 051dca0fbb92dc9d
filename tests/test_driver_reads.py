"""The hottest reads run on the driver's cursor (credits/driver_reads.py) and answer
exactly what SQLAlchemy's own path answers: the same rows, times in UTC whatever
the server's time zone, SQLAlchemy's path wherever a value needs converting, and a
lost connection raised and invalidated as SQLAlchemy would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    cast,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from test_db_readers import _wait_until_terminated

from credits.db import UtcDateTime, make_engine
from credits.driver_reads import DriverRead
from credits.identity.access_datasets import can_manage_project_datasets
from credits.identity.actor import Actor
from credits.identity.models import Role

ITEMS = Table(
    "driver_read_items",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("name", String(20)),
    Column("amount", Integer),
    Column("at", UtcDateTime),
)
START = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)
BY_AMOUNT = select(ITEMS).where(ITEMS.c.amount >= bindparam("least")).order_by(ITEMS.c.id)


def _fill(connection: Connection) -> None:
    connection.execute(
        ITEMS.insert(),
        [
            {"id": n, "name": f"item {n}", "amount": n * 10, "at": START + timedelta(hours=n)}
            for n in range(1, 6)
        ]
        + [{"id": 6, "name": None, "amount": 60, "at": None}],
    )


@pytest.fixture(params=["America/Los_Angeles", "Etc/UTC"])
def postgres(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[Connection]:
    """A connection with the table as a temporary one, in a time zone far from UTC
    and in PostgreSQL's default one."""
    engine = make_engine(postgres_url, pool_size=1)
    with engine.connect() as connection:
        connection.exec_driver_sql(f"SET TIME ZONE '{request.param}'")
        connection.exec_driver_sql(
            "CREATE TEMPORARY TABLE driver_read_items "
            "(id bigint PRIMARY KEY, name varchar(20), amount integer, at timestamptz)"
        )
        _fill(connection)
        yield connection
    engine.dispose()


@pytest.mark.postgres
def test_rows_read_on_the_driver_are_sqlalchemys_rows_with_times_in_utc(
    postgres: Connection,
) -> None:
    read = DriverRead(BY_AMOUNT)

    rows = read.rows(postgres, {"least": 30})

    assert read._plan(postgres.dialect) is not None  # the driver's path was taken
    assert [tuple(row) for row in rows] == [
        tuple(row) for row in postgres.execute(BY_AMOUNT, {"least": 30}).all()
    ]
    assert read.names == ("id", "name", "amount", "at")
    assert [row[3] for row in rows] == [START + timedelta(hours=n) for n in (3, 4, 5)] + [None]
    assert all(row[3].utcoffset() == timedelta(0) for row in rows if row[3] is not None)


@pytest.mark.postgres
def test_a_bind_value_that_needs_converting_goes_through_sqlalchemy(
    postgres: Connection,
) -> None:
    after = select(ITEMS.c.id).where(ITEMS.c.at > bindparam("after", type_=UtcDateTime))
    read = DriverRead(after.order_by(ITEMS.c.id))

    rows = read.rows(postgres, {"after": START + timedelta(hours=3)})

    assert read._plan(postgres.dialect) is None
    assert [row[0] for row in rows] == [4, 5]


@pytest.mark.postgres
def test_a_lost_connection_is_invalidated_and_raised_as_sqlalchemy_raises_it(
    postgres: Connection, postgres_url: str, postgres_engine: Engine
) -> None:
    read = DriverRead(BY_AMOUNT)
    read.rows(postgres, {"least": 0})
    pid = postgres.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    with postgres_engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
    _wait_until_terminated(postgres_url, pid)

    with pytest.raises(DBAPIError) as raised:
        read.rows(postgres, {"least": 0})

    assert raised.value.connection_invalidated
    assert postgres.invalidated


def test_on_sqlite_the_read_goes_through_sqlalchemy() -> None:
    engine = make_engine("sqlite://")
    with engine.begin() as connection:
        ITEMS.create(connection)
        _fill(connection)
        read = DriverRead(BY_AMOUNT)

        rows = read.rows(connection, {"least": 50})

        assert read._plan(connection.dialect) is None
        assert [(row[0], row[3]) for row in rows] == [(5, START + timedelta(hours=5)), (6, None)]
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("ids", [[2, 4], []], ids=["a list", "an empty list"])
def test_an_in_list_goes_through_sqlalchemy_which_renders_it(
    postgres: Connection, ids: list[int]
) -> None:
    read = DriverRead(select(ITEMS.c.id).where(ITEMS.c.id.in_(ids)).order_by(ITEMS.c.id))

    rows = read.rows(postgres, {})

    assert read._plan(postgres.dialect) is None
    assert [row[0] for row in rows] == ids


@pytest.mark.postgres
def test_a_column_sqlalchemy_converts_goes_through_sqlalchemy(postgres: Connection) -> None:
    read = DriverRead(select(cast(ITEMS.c.amount, Numeric(10, 2))).where(ITEMS.c.id == 1))

    rows = read.rows(postgres, {})

    assert read._plan(postgres.dialect) is None
    assert rows[0][0] == Decimal("10.00")


@pytest.mark.postgres
def test_a_funder_may_not_manage_a_projects_datasets_and_is_told_so_on_postgresql(
    pg_session: Session,
) -> None:
    funder = Actor.for_user(
        user_id=1, email="fay@example.org", roles=frozenset({Role.FUNDER}), scopes=None
    )
    assert not can_manage_project_datasets(pg_session, funder, 1)
