"""``credits users`` and ``credits tokens``: one transaction and one service call each.

Every command acts as the system actor ``system:cli``: whoever can run the CLI
against the database already holds every right the platform has.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime

import click

from credits import formatting as fmt
from credits.cli_support import ROW_ID, cli_transaction, reports_errors
from credits.db import utcnow
from credits.identity import oidc, service
from credits.identity import tokens as token_service
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope
from credits.identity.people import people_by_id
from credits.identity.schemas import TokenOut, UserOut

ROLE_CHOICE = click.Choice([role.value for role in Role], case_sensitive=False)
SCOPE_CHOICE = click.Choice([scope.value for scope in Scope], case_sensitive=False)


def _cli_actor() -> Actor:
    return Actor.system("cli")


def _echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns separated by two spaces: readable, and easy to cut and grep."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    for line in (headers, *rows):
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _describe_user(user: UserOut) -> str:
    roles = ", ".join(role.value for role in user.roles) or "none"
    return f"user {user.id} {user.email} (roles: {roles})"


@click.group()
def users() -> None:
    """Create users and grant or revoke their roles."""


@users.command("create")
@click.option("--email", required=True, help="Email address; stored lowercased.")
@click.option("--name", required=True, help="Full name.")
@click.option("--role", "roles", type=ROLE_CHOICE, multiple=True, required=True, help="Repeatable.")
@click.option("--institution", default=None, help="University or institute.")
@click.option("--orcid", default=None, help="ORCID iD, 0000-0000-0000-000X.")
@click.option(
    "--password-stdin", is_flag=True, help="Read a password from the first line of stdin."
)
@reports_errors
def create_user(
    *,
    email: str,
    name: str,
    roles: tuple[str, ...],
    institution: str | None,
    orcid: str | None,
    password_stdin: bool,
) -> None:
    """Create a user with one or more roles."""
    # Only the line ending is removed: spaces may be part of a password.
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    with cli_transaction() as session:
        user = service.create_user(
            session,
            email=email,
            name=name,
            roles=roles,
            institution=institution,
            orcid=orcid,
            password=password,
            actor=_cli_actor(),
        )
    click.echo(f"created {_describe_user(user)}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def list_users(as_json: bool) -> None:
    """List every user with their roles."""
    with cli_transaction() as session:
        found = service.list_users(session)
    if as_json:
        click.echo(json.dumps([user.model_dump(mode="json") for user in found]))
        return
    rows = [
        [str(u.id), u.email, u.name, ",".join(r.value for r in u.roles), u.institution or "-"]
        for u in found
    ]
    _echo_table(["ID", "EMAIL", "NAME", "ROLES", "INSTITUTION"], rows)


@users.command("grant-role")
@click.option("--email", required=True)
@click.option("--role", type=ROLE_CHOICE, required=True)
@reports_errors
def grant_role(email: str, role: str) -> None:
    """Give a user a role (nothing changes when they hold it already)."""
    with cli_transaction() as session:
        user = service.grant_role(session, email=email, role=role, actor=_cli_actor())
    click.echo(_describe_user(user))


@users.command("revoke-role")
@click.option("--email", required=True)
@click.option("--role", type=ROLE_CHOICE, required=True)
@reports_errors
def revoke_role(email: str, role: str) -> None:
    """Take a role from a user (nothing changes when they do not hold it)."""
    with cli_transaction() as session:
        user = service.revoke_role(session, email=email, role=role, actor=_cli_actor())
    click.echo(_describe_user(user))


@users.command("sign-out")
@click.option("--email", required=True)
@click.option(
    "--revoke-tokens",
    is_flag=True,
    help="Also revoke every API token of the user (an account taken over).",
)
@reports_errors
def sign_out(email: str, revoke_tokens: bool) -> None:
    """End every portal session of a user, in every browser; API tokens are kept
    unless --revoke-tokens is given."""
    with cli_transaction() as session:
        user = service.get_user_by_email(session, email)
        service.end_sessions(session, user_id=user.id)
        revoked = (
            token_service.revoke_user_tokens(session, user_id=user.id, actor=_cli_actor())
            if revoke_tokens
            else []
        )
    suffix = f"; revoked {len(revoked)} API token(s)" if revoke_tokens else ""
    click.echo(f"signed out {_describe_user(user)} everywhere{suffix}")


@users.command("deactivate")
@click.option("--email", required=True)
@reports_errors
def deactivate(email: str) -> None:
    """Stop a user: no sign-in, their portal sessions end at once and their API tokens
    are refused (kept, for a later reactivate)."""
    _set_active(email, active=False)


@users.command("reactivate")
@click.option("--email", required=True)
@reports_errors
def reactivate(email: str) -> None:
    """Let a deactivated user sign in again; their unrevoked API tokens work again."""
    _set_active(email, active=True)


def _set_active(email: str, *, active: bool) -> None:
    with cli_transaction() as session:
        user = service.set_active(session, email=email, active=active, actor=_cli_actor())
    click.echo(f"{'reactivated' if active else 'deactivated'} {_describe_user(user)}")


@users.command("unlink-oidc")
@click.option("--email", required=True)
@reports_errors
def unlink_oidc(email: str) -> None:
    """Forget the user's OIDC identity; their next verified sign-in links a new one."""
    with cli_transaction() as session:
        removed = oidc.unlink_oidc(session, email=email, actor=_cli_actor())
        service.end_sessions(session, user_id=service.get_user_by_email(session, email).id)
    click.echo(f"removed {removed} OIDC link(s) of {email.strip().lower()}")


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens."""


@tokens.command("create")
@click.option("--email", required=True, help="The user the token acts as.")
@click.option("--name", default="", help="A label to tell tokens apart.")
@click.option(
    "--expires-in-days",
    type=int,
    default=None,
    help=f"1 to {token_service.MAX_TOKEN_DAYS}; {token_service.DEFAULT_TOKEN_DAYS} when not given.",
)
@click.option("--never-expires", is_flag=True, help="A token without an expiry date.")
@click.option("--scope", "scopes", type=SCOPE_CHOICE, multiple=True, help="Repeatable; none: all.")
@reports_errors
def create_token(
    *,
    email: str,
    name: str,
    expires_in_days: int | None,
    never_expires: bool,
    scopes: tuple[str, ...],
) -> None:
    """Create an API token; its secret is printed once, on stdout."""
    if never_expires and expires_in_days is not None:
        raise click.UsageError("--never-expires and --expires-in-days exclude each other")
    days = expires_in_days
    if days is None and not never_expires:
        days = token_service.DEFAULT_TOKEN_DAYS
    with cli_transaction() as session:
        created = token_service.create_token(
            session,
            email=email,
            actor=_cli_actor(),
            name=name,
            expires_in_days=days,
            scopes=scopes,
        )
    # The secret alone on stdout, so `credits tokens create ... > file` captures just it.
    click.echo(created.secret)
    click.echo(
        f"token {created.token.id} ({created.token.prefix}…) expires "
        f"{_when(created.token.expires_at)}; store the secret now: it will not be shown again",
        err=True,
    )


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else fmt.when(moment)


def _token_state(token: TokenOut, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


@tokens.command("list")
@click.option("--email", default=None, help="Only this user's tokens.")
@reports_errors
def list_tokens(email: str | None) -> None:
    """List tokens: prefix, scopes, expiry and state, never a secret."""
    with cli_transaction() as session:
        found = token_service.list_tokens(session, email=email)
        people = people_by_id(session, {t.user_id for t in found})
    now = utcnow()
    rows = [
        [
            str(t.id),
            people[t.user_id].email if t.user_id in people else str(t.user_id),
            t.name or "-",
            t.prefix,
            ",".join(s.value for s in t.scopes) or "all",
            _when(t.expires_at),
            _when(t.last_used_at),
            _token_state(t, now),
        ]
        for t in found
    ]
    headers = ["ID", "USER", "NAME", "PREFIX", "SCOPES", "EXPIRES", "LAST USED", "STATE"]
    _echo_table(headers, rows)


@tokens.command("revoke")
@click.argument("token_id", type=ROW_ID)
@reports_errors
def revoke_token(token_id: int) -> None:
    """Revoke the token TOKEN_ID at once."""
    with cli_transaction() as session:
        token = token_service.revoke_token(session, token_id=token_id, actor=_cli_actor())
    click.echo(f"revoked token {token.id} ({token.prefix}…)")
