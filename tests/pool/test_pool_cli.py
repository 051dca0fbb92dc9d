"""``credits pool`` commands: flavours add/list, rates set/list, and one-line errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.db import utcnow
from credits.identity import service as identity
from credits.identity.actor import Actor
from credits.pool import service

SYSTEM = Actor.system("test")
OPS_EMAIL = "ops@example.org"
ADD_A100 = (
    "flavours",
    "add",
    "--name",
    "a100-80gb",
    "--node-label",
    "NVIDIA-A100-SXM4-80GB",
    "--gpu-memory-gb",
    "80",
    "--gpus-per-node",
    "8",
    "--as",
    OPS_EMAIL,
)


@pytest.fixture
def run(joined_session_factory: sessionmaker[Session]) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(
            main, ["pool", *args], obj={"session_factory": joined_session_factory}
        )

    return invoke


@pytest.fixture(autouse=True)
def _users(session: Session) -> None:
    identity.create_user(session, email=OPS_EMAIL, name="Olga Ops", roles=["ops"], actor=SYSTEM)
    identity.create_user(
        session, email="rita@example.org", name="Rita R", roles=["researcher"], actor=SYSTEM
    )
    session.flush()


@pytest.fixture
def a100(run: Callable[..., Result]) -> None:
    result = run(*ADD_A100)
    assert result.exit_code == 0, result.output


def _set_rate(run: Callable[..., Result], *extra: str, rate: str = "2.5") -> Result:
    return run(
        "rates",
        "set",
        "--flavour",
        "a100-80gb",
        "--credits-per-gpu-hour",
        rate,
        "--as",
        OPS_EMAIL,
        *extra,
    )


def test_ops_add_and_list_a_flavour(run: Callable[..., Result]) -> None:
    added = run(*ADD_A100, "--description", "training")
    assert added.exit_code == 0, added.output
    assert "flavour a100-80gb: 8 x 80 GB GPUs per node" in added.output

    table = run("flavours", "list")
    assert table.exit_code == 0, table.output
    assert "a100-80gb" in table.output and "NVIDIA-A100-SXM4-80GB" in table.output
    listed = json.loads(run("flavours", "list", "--json").output)
    assert [(f["name"], f["description"]) for f in listed["items"]] == [("a100-80gb", "training")]


def test_set_a_rate_from_now_and_list_it_in_force(
    session: Session, run: Callable[..., Result], a100: None
) -> None:
    result = _set_rate(run, "--reason", "launch price")
    assert result.exit_code == 0, result.output
    assert "2.5 credits per GPU-hour on a100-80gb" in result.output

    table = run("rates", "list", "--flavour", "a100-80gb")
    assert table.exit_code == 0, table.output
    assert "2.5" in table.output and "yes" in table.output and "launch price" in table.output
    assert "2.5" in run("flavours", "list").output
    [rate] = json.loads(run("rates", "list", "--json").output)["items"]
    assert (rate["micro_credits_per_gpu_hour"], rate["in_force"]) == (2_500_000, True)
    assert service.rate_in_force(session, flavour="a100-80gb", at=utcnow()).id == rate["id"]


def test_a_future_rate_is_listed_but_not_in_force(run: Callable[..., Result], a100: None) -> None:
    later = (utcnow() + timedelta(days=7)).isoformat()
    assert _set_rate(run, rate="1").exit_code == 0
    assert _set_rate(run, "--effective-from", later, rate="3.25").exit_code == 0

    items = json.loads(run("rates", "list", "--json").output)["items"]

    assert [(r["micro_credits_per_gpu_hour"], r["in_force"]) for r in items] == [
        (3_250_000, False),
        (1_000_000, True),
    ]


def test_a_rate_from_now_is_set_ahead_of_a_version_set_for_later(
    session: Session, run: Callable[..., Result], a100: None
) -> None:
    later = (utcnow() + timedelta(days=365)).isoformat()
    assert _set_rate(run, "--effective-from", later, rate="3.25").exit_code == 0

    result = _set_rate(run, rate="2.5")

    assert result.exit_code == 0, result.output
    assert "2.5 credits per GPU-hour on a100-80gb" in result.output
    items = json.loads(run("rates", "list", "--json").output)["items"]
    assert [(r["micro_credits_per_gpu_hour"], r["in_force"]) for r in items] == [
        (3_250_000, False),
        (2_500_000, True),
    ]
    assert service.rate_in_force(session, flavour="a100-80gb", at=utcnow()).id == items[1]["id"]


@pytest.mark.parametrize(
    ("extra", "rate", "message"),
    [
        (("--effective-from", "2020-01-01T00:00:00Z"), "2.5", "cannot take effect in the past"),
        (("--effective-from", "2099-01-01T00:00:00"), "2.5", "has no timezone"),
        (("--effective-from", "next tuesday"), "2.5", "is not an ISO 8601 time"),
        ((), "abc", "enter a number of credits"),
        ((), "1.0000001", "at most 6 decimal places"),
        ((), "1e999999", "no exponent"),
        ((), "0", "above zero"),
        ((), "-1", "above zero"),
        (("--as", "rita@example.org"), "2.5", "only ops may set a GPU rate"),
        (("--as", "nobody@example.org"), "2.5", "no user has the email"),
    ],
)
def test_bad_rates_are_one_error_line_and_save_nothing(
    session: Session,
    run: Callable[..., Result],
    a100: None,
    extra: tuple[str, ...],
    rate: str,
    message: str,
) -> None:
    result = _set_rate(run, *extra, rate=rate)

    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert service.list_rates(session) == []


def test_an_unknown_flavour_is_one_error_line(run: Callable[..., Result]) -> None:
    for result in (
        _set_rate(run),
        run("rates", "list", "--flavour", "a100-80gb"),
    ):
        assert result.exit_code == 1
        assert result.output.strip() == "error: no GPU flavour is named 'a100-80gb'"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--name", "A100"), "a flavour name is 2 to 63 lowercase letters"),
        (("--as", "rita@example.org"), "only ops may add a GPU flavour"),
        (("--gpus-per-node", "65"), "gpus_per_node is a whole number from 1 to 64"),
    ],
)
def test_bad_flavours_are_one_error_line(
    session: Session, run: Callable[..., Result], change: tuple[str, str], message: str
) -> None:
    args = list(ADD_A100)
    args[args.index(change[0]) + 1] = change[1]

    result = run(*args)

    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert service.list_flavours(session) == []


def test_a_duplicate_flavour_is_one_error_line(run: Callable[..., Result], a100: None) -> None:
    result = run(*ADD_A100)

    assert result.exit_code == 1
    assert result.output.strip() == "error: a GPU flavour named 'a100-80gb' already exists"


def test_ops_cap_a_flavours_checkpoint_grace(
    session: Session, run: Callable[..., Result], a100: None
) -> None:
    result = run("flavours", "set-checkpoint-grace", "a100-80gb", "120", "--as", OPS_EMAIL)
    assert result.exit_code == 0, result.output
    assert "checkpoint grace at most 2 min" in result.output
    assert service.get_flavour(session, name="a100-80gb").max_checkpoint_grace_seconds == 120
    listed = json.loads(run("flavours", "list", "--json").output)["items"]
    assert listed[0]["max_checkpoint_grace_seconds"] == 120


@pytest.mark.parametrize(
    ("seconds", "email", "message"),
    [
        ("-5", OPS_EMAIL, "max_checkpoint_grace_seconds is a whole number from 0 to 86400"),
        ("86401", OPS_EMAIL, "max_checkpoint_grace_seconds is a whole number from 0 to 86400"),
        ("60", "rita@example.org", "only ops may change a GPU flavour"),
    ],
)
def test_a_bad_checkpoint_grace_cap_is_a_one_line_error_and_changes_nothing(
    session: Session, run: Callable[..., Result], a100: None, seconds: str, email: str, message: str
) -> None:
    result = run("flavours", "set-checkpoint-grace", "a100-80gb", "--as", email, "--", seconds)
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert service.get_flavour(session, name="a100-80gb").max_checkpoint_grace_seconds == 300


def test_the_rate_history_names_who_set_a_rate_and_when_to_the_minute(
    run: Callable[..., Result], a100: None
) -> None:
    assert _set_rate(run, "--reason", "launch price").exit_code == 0
    table = run("rates", "list", "--flavour", "a100-80gb")
    assert table.exit_code == 0, table.output
    assert "Olga Ops" in table.output and "user:" not in table.output
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", table.output), table.output
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", table.output), table.output
