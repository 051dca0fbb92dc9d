"""``credits ledger set-status --status active`` on an allocation account of a
suspended project: refused in one line, so the project cannot spend again
behind its suspension."""

from __future__ import annotations

from click.testing import CliRunner
from ledger_helpers import SYSTEM, audit_count, funded_allocation
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.grants import projects
from credits.identity import service as identity
from credits.ledger import queries


def test_reactivating_an_allocation_of_a_suspended_project_is_one_error_line(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    for email, role in (("ops@example.org", "ops"), ("pia@example.org", "researcher")):
        identity.create_user(session, email=email, name=email, roles=[role], actor=SYSTEM)
    ops = identity.actor_for_email(session, "ops@example.org")
    pi = identity.actor_for_email(session, "pia@example.org")
    project = projects.create_project(session, title="Ice", field_of_science="Glaciology", actor=pi)
    account = funded_allocation(session, amount=5, project_id=project.id)
    projects.suspend_project(session, project_id=project.id, actor=ops, reason="audit")
    session.flush()
    events = audit_count(session)

    args = ["--account", str(account.id), "--status", "active", "--reason", "looks fine"]
    result = CliRunner().invoke(
        main,
        ["ledger", "set-status", *args, "--as", "ops@example.org"],
        obj={"session_factory": joined_session_factory},
    )

    assert result.exit_code == 1
    assert result.output == (
        f"error: account {account.id} is an allocation of project {project.id}, "
        "which is suspended; unsuspend the project instead\n"
    )
    assert queries.get_account(session, account_id=account.id).status == "suspended"
    assert audit_count(session) == events
