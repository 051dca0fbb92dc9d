"""``credits users`` and ``credits tokens`` through click, on the test's rolled-back connection."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.audit.service import list_events
from credits.identity import service
from credits.identity import tokens as token_service
from credits.identity.actor import Actor
from credits.identity.cli import tokens, users
from credits.identity.errors import TokenOwnerInactive
from credits.identity.models import ApiToken, Role, User

EMAIL = "ada@example.org"


@pytest.fixture
def invoke(
    joined_session_factory: sessionmaker[Session],
) -> _Invoker:
    return _Invoker(joined_session_factory)


class _Invoker:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def __call__(self, group: click.Group, args: Sequence[str], stdin: str | None = None) -> Result:
        return CliRunner().invoke(
            group, list(args), input=stdin, obj={"session_factory": self.factory}
        )


def _create_ada(invoke: _Invoker, *extra: str) -> Result:
    result = invoke(users, ["create", "--email", EMAIL, "--name", "Ada Lovelace", *extra])
    assert result.exit_code == 0, result.output
    return result


def _user_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def test_users_create_creates_the_user_as_the_cli(session: Session, invoke: _Invoker) -> None:
    result = _create_ada(
        invoke, "--role", "researcher", "--role", "FUNDER", "--orcid", "0000-0002-1825-0097"
    )

    assert "created user" in result.stdout
    assert "roles: funder, researcher" in result.stdout
    user = service.get_user_by_email(session, EMAIL)
    assert user.roles == [Role.FUNDER, Role.RESEARCHER]
    assert user.orcid == "0000-0002-1825-0097"
    events = list_events(session, subject_type="user", subject_id=str(user.id))
    assert {e.actor for e in events} == {"system:cli"}


def test_users_create_reads_the_password_from_stdin(session: Session, invoke: _Invoker) -> None:
    result = invoke(
        users,
        ["create", "--email", EMAIL, "--name", "Ada", "--role", "ops", "--password-stdin"],
        stdin="  spaces count too  \nsecond line is ignored\n",
    )

    assert result.exit_code == 0, result.output
    actor = service.authenticate_password(session, email=EMAIL, password="  spaces count too  ")
    assert actor.email == EMAIL


def test_users_create_with_a_short_password_fails_and_creates_nothing(
    session: Session, invoke: _Invoker
) -> None:
    before = _user_count(session)

    result = invoke(
        users,
        ["create", "--email", EMAIL, "--name", "Ada", "--role", "ops", "--password-stdin"],
        stdin="short\n",
    )

    assert result.exit_code == 1
    assert result.stderr == "error: a password has at least 12 characters\n"
    assert _user_count(session) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "nope", "--name", "Ada", "--role", "ops"], "error: 'nope' is not a valid"),
        (
            ["--email", EMAIL, "--name", "Ada", "--role", "ops", "--orcid", "0000-0002-1825-0098"],
            "error: 0000-0002-1825-0098 fails the ORCID checksum",
        ),
    ],
)
def test_users_create_reports_bad_input_on_one_line(
    session: Session, invoke: _Invoker, args: list[str], message: str
) -> None:
    before = _user_count(session)

    result = invoke(users, ["create", *args])

    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert _user_count(session) == before


def test_users_create_with_a_taken_email_fails(invoke: _Invoker) -> None:
    _create_ada(invoke, "--role", "ops")

    result = invoke(users, ["create", "--email", EMAIL, "--name", "Ada 2", "--role", "ops"])

    assert result.exit_code == 1
    assert "already exists" in result.stderr


def test_users_create_refuses_an_unknown_role_as_a_usage_error(invoke: _Invoker) -> None:
    result = invoke(users, ["create", "--email", EMAIL, "--name", "Ada", "--role", "astronaut"])

    assert result.exit_code == 2
    assert "astronaut" in result.stderr


def test_users_create_needs_a_role(invoke: _Invoker) -> None:
    result = invoke(users, ["create", "--email", EMAIL, "--name", "Ada"])

    assert result.exit_code == 2
    assert "--role" in result.stderr


def test_users_list_shows_aligned_columns(invoke: _Invoker) -> None:
    _create_ada(invoke, "--role", "ops", "--role", "funder", "--institution", "Engines Ltd")
    invoke(users, ["create", "--email", "g@example.org", "--name", "Grace", "--role", "reviewer"])

    result = invoke(users, ["list"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "EMAIL", "NAME", "ROLES", "INSTITUTION"]
    header = lines[0]
    starts = [header.index(title) for title in ("EMAIL", "NAME", "ROLES", "INSTITUTION")]
    ada = next(line for line in lines if EMAIL in line)
    grace = next(line for line in lines if "g@example.org" in line)
    assert [ada[start:].split("  ")[0] for start in starts] == [
        EMAIL,
        "Ada Lovelace",
        "funder,ops",
        "Engines Ltd",
    ]
    assert [grace[start:].split("  ")[0] for start in starts] == [
        "g@example.org",
        "Grace",
        "reviewer",
        "-",
    ]


def test_users_grant_and_revoke_role(session: Session, invoke: _Invoker) -> None:
    _create_ada(invoke, "--role", "researcher")

    granted = invoke(users, ["grant-role", "--email", EMAIL, "--role", "reviewer"])
    revoked = invoke(users, ["revoke-role", "--email", EMAIL, "--role", "researcher"])

    assert granted.exit_code == 0, granted.output
    assert "roles: researcher, reviewer" in granted.stdout
    assert revoked.exit_code == 0, revoked.output
    assert "roles: reviewer" in revoked.stdout
    assert service.get_user_by_email(session, EMAIL).roles == [Role.REVIEWER]


def test_users_grant_role_to_an_unknown_user_fails(invoke: _Invoker) -> None:
    result = invoke(users, ["grant-role", "--email", "nobody@example.org", "--role", "ops"])

    assert result.exit_code == 1
    assert result.stderr == "error: no user has the email address 'nobody@example.org'\n"


def test_tokens_create_prints_the_secret_alone_on_stdout(
    session: Session, invoke: _Invoker
) -> None:
    _create_ada(invoke, "--role", "researcher")

    result = invoke(tokens, ["create", "--email", EMAIL, "--name", "laptop", "--scope", "read"])

    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert result.stdout == secret + "\n"
    assert secret.startswith("crd_")
    assert "will not be shown again" in result.stderr
    assert secret not in result.stderr
    row = session.scalar(select(ApiToken).where(ApiToken.name == "laptop"))
    assert row is not None
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.scopes == "read"
    assert token_service.resolve_token(session, secret=secret).email == EMAIL


def test_tokens_create_defaults_to_90_days(session: Session, invoke: _Invoker) -> None:
    _create_ada(invoke, "--role", "researcher")

    result = invoke(tokens, ["create", "--email", EMAIL])

    assert result.exit_code == 0, result.output
    token = token_service.list_tokens(session, email=EMAIL)[0]
    assert token.expires_at is not None
    assert (token.expires_at - token.created_at).days == 90


def test_tokens_create_never_expires(session: Session, invoke: _Invoker) -> None:
    _create_ada(invoke, "--role", "researcher")

    result = invoke(tokens, ["create", "--email", EMAIL, "--never-expires"])

    assert result.exit_code == 0, result.output
    assert "expires never" in result.stderr
    assert token_service.list_tokens(session, email=EMAIL)[0].expires_at is None


def test_tokens_create_refuses_both_expiry_options(invoke: _Invoker) -> None:
    _create_ada(invoke, "--role", "researcher")

    result = invoke(
        tokens, ["create", "--email", EMAIL, "--never-expires", "--expires-in-days", "3"]
    )

    assert result.exit_code == 2
    assert "exclude each other" in result.stderr


@pytest.mark.parametrize("days", ["0", "3651"])
def test_tokens_create_refuses_an_expiry_out_of_range(
    session: Session, invoke: _Invoker, days: str
) -> None:
    _create_ada(invoke, "--role", "researcher")

    result = invoke(tokens, ["create", "--email", EMAIL, "--expires-in-days", days])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: a token expires in 1 to 3650 days")
    assert result.stdout == ""
    assert token_service.list_tokens(session, email=EMAIL) == []


def test_tokens_list_shows_state_and_never_a_secret(invoke: _Invoker) -> None:
    _create_ada(invoke, "--role", "researcher")
    secret = invoke(tokens, ["create", "--email", EMAIL, "--name", "ci"]).stdout.strip()
    invoke(tokens, ["create", "--email", EMAIL, "--name", "old", "--scope", "meter"])

    result = invoke(tokens, ["list", "--email", EMAIL])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "USER", "NAME", "PREFIX", "SCOPES"]
    assert len(lines) == 3
    assert secret not in result.stdout
    assert secret[:12] in lines[1]
    assert " all " in lines[1]
    assert " meter " in lines[2]
    assert all(line.endswith("active") for line in lines[1:])


def test_tokens_revoke_revokes_and_a_second_revoke_fails(
    session: Session, invoke: _Invoker
) -> None:
    _create_ada(invoke, "--role", "researcher")
    invoke(tokens, ["create", "--email", EMAIL])
    token_id = token_service.list_tokens(session, email=EMAIL)[0].id

    first = invoke(tokens, ["revoke", str(token_id)])
    second = invoke(tokens, ["revoke", str(token_id)])
    listing = invoke(tokens, ["list"])

    assert first.exit_code == 0, first.output
    assert f"revoked token {token_id}" in first.stdout
    assert second.exit_code == 1
    assert "already revoked" in second.stderr
    assert listing.stdout.splitlines()[-1].endswith("revoked")


def test_tokens_revoke_of_an_unknown_id_fails(invoke: _Invoker) -> None:
    result = invoke(tokens, ["revoke", "999999"])

    assert result.exit_code == 1
    assert result.stderr == "error: no API token has the id 999999\n"


def test_users_and_tokens_are_commands_of_credits(invoke: _Invoker) -> None:
    # Imported here so that a broken sibling command group fails this test alone.
    from credits.cli import main  # noqa: PLC0415

    _create_ada(invoke, "--role", "ops")

    result = invoke(main, ["users", "list"])

    assert result.exit_code == 0, result.output
    assert EMAIL in result.stdout
    assert invoke(main, ["tokens", "list"]).exit_code == 0


def test_users_deactivate_refuses_the_tokens_until_reactivate(
    session: Session, invoke: _Invoker
) -> None:
    _create_ada(invoke, "--role", "researcher")
    secret = token_service.create_token(session, email=EMAIL, actor=Actor.system("tests")).secret
    generation = session.scalars(select(User.session_generation)).one()

    stopped = invoke(users, ["deactivate", "--email", EMAIL])
    again = invoke(users, ["deactivate", "--email", EMAIL])

    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.startswith("deactivated user")
    assert again.exit_code == 0, again.output
    session.expire_all()
    user = session.scalars(select(User)).one()
    assert not user.is_active
    assert user.session_generation == generation + 1
    with pytest.raises(TokenOwnerInactive):
        token_service.resolve_token(session, secret=secret)

    restored = invoke(users, ["reactivate", "--email", EMAIL])

    assert restored.exit_code == 0, restored.output
    assert restored.stdout.startswith("reactivated user")
    assert token_service.resolve_token(session, secret=secret).user_id == user.id
    kinds = [event.event_type for event in list_events(session, subject_type="user")]
    assert kinds.count("user.deactivated") == 1
    assert kinds.count("user.reactivated") == 1


def test_users_deactivate_of_an_unknown_address_fails_with_one_line(invoke: _Invoker) -> None:
    result = invoke(users, ["deactivate", "--email", "nobody@example.org"])

    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1
    assert "nobody@example.org" in result.output
