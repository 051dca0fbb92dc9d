"""What suspending, unsuspending and archiving a project leave in the books: the
allocation rows follow their accounts, an archived project's pending tranches
stop holding the program's budget, and no allocation account of a project that
is not active can be reactivated by hand."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from grants_helpers import event_data, new_project, uid
from proposal_helpers import CREDIT, World, awarded, proposal_values, reviewed, world
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.grants import project_archive, projects
from credits.grants.allocations import release_tranche
from credits.grants.awards import award_proposal
from credits.grants.errors import ProjectStatusConflict
from credits.grants.models import Allocation
from credits.grants.proposals import create_proposal, submit_proposal
from credits.grants.reviews import assign_reviewer, submit_review
from credits.ledger import queries as ledger_queries
from credits.ledger import service as ledger
from credits.ledger.models import AccountStatus
from credits.ledger.verify import verify_ledger
from credits.reports.csv_export import to_csv
from credits.reports.service import program_report, project_report
from credits.settings import load_settings


def _row_statuses(session: Session, project_id: int) -> list[str]:
    return list(
        session.scalars(
            select(Allocation.status)
            .where(Allocation.project_id == project_id)
            .order_by(Allocation.id)
            .execution_options(populate_existing=True)
        )
    )


def _award_to_new_project(session: Session, w: World, amount: int) -> Any:
    """A second project (led by max), its proposal reviewed once and awarded ``amount``."""
    other = new_project(session, w.max, title="Sea ice")
    proposal = create_proposal(
        session,
        program_id=w.program_id,
        project_id=other.id,
        actor=w.max,
        **proposal_values(requested={"gpu": amount}),
    )
    submit_proposal(session, proposal_id=proposal.id, actor=w.max)
    reviewer = w.reviewers[0]
    assign_reviewer(session, proposal_id=proposal.id, reviewer_user_id=uid(reviewer), actor=w.fay)
    submit_review(
        session,
        proposal_id=proposal.id,
        actor=reviewer,
        scores={"merit": 4, "fit": 4},
        comment="Sound plan.",
    )
    return award_proposal(
        session,
        proposal_id=proposal.id,
        actor=w.fay,
        key="award-other",
        amounts={"gpu": amount},
        starts_at=proposal.starts_at,
        ends_at=proposal.ends_at,
    )


# Archived projects' tranches.


def test_archiving_a_project_frees_the_budget_its_pending_tranches_held(
    any_session: Session,
) -> None:
    session = any_session
    w = world(session, budget=1000 * CREDIT, initial_share_percent=50, min_reviewers=1)
    first = awarded(session, w, requested={"gpu": 800 * CREDIT}, reviewers=1)
    (tranche,) = first.tranches

    project_archive.archive_project(session, project_id=w.project_id, actor=w.pia, reason="done")

    second = _award_to_new_project(session, w, 600 * CREDIT)
    assert second.allocations[0].released_micro == 300 * CREDIT
    assert event_data(
        session, "allocation", first.allocations[0].id, "allocation.tranche_withdrawn"
    ) == {
        "tranche_id": tranche.id,
        "amount": 400 * CREDIT,
        "currency": "gpu",
        "reason": f"project {w.project_id} archived",
    }
    assert verify_ledger(session).ok


def test_an_archived_projects_tranche_cannot_be_released(any_session: Session) -> None:
    session = any_session
    w = world(session, initial_share_percent=50)
    (tranche,) = awarded(session, w).tranches
    project_archive.archive_project(session, project_id=w.project_id, actor=w.pia)

    with pytest.raises(ProjectStatusConflict) as refused:
        release_tranche(
            session, tranche_id=tranche.id, actor=w.fay, progress_report="Done.", key="r1"
        )

    assert refused.value.extra == {"current_status": "archived"}


# Allocation rows follow their accounts.


def test_an_allocation_awarded_while_suspended_is_active_again_after_unsuspending(
    any_session: Session,
) -> None:
    session = any_session
    w = world(session)
    proposal = reviewed(session, w)
    projects.suspend_project(session, project_id=w.project_id, actor=w.ops, reason="audit")
    award_proposal(
        session,
        proposal_id=proposal.id,
        actor=w.fay,
        key="award-1",
        amounts=proposal.requested,
        starts_at=proposal.starts_at,
        ends_at=proposal.ends_at,
    )
    assert _row_statuses(session, w.project_id) == ["suspended"]

    projects.unsuspend_project(session, project_id=w.project_id, actor=w.ops, reason="cleared")

    assert _row_statuses(session, w.project_id) == ["active"]


def test_allocation_rows_follow_suspend_unsuspend_archive_and_ops(any_session: Session) -> None:
    session = any_session
    w = world(session)
    (allocation,) = awarded(session, w).allocations

    projects.suspend_project(session, project_id=w.project_id, actor=w.ops, reason="audit")
    assert _row_statuses(session, w.project_id) == ["suspended"]
    projects.unsuspend_project(session, project_id=w.project_id, actor=w.ops, reason="cleared")
    assert _row_statuses(session, w.project_id) == ["active"]
    ledger.set_account_status(
        session, account_id=allocation.account_id, status="suspended", actor=w.ops, reason="fraud"
    )
    assert _row_statuses(session, w.project_id) == ["suspended"]
    ledger.set_account_status(
        session, account_id=allocation.account_id, status="active", actor=w.ops, reason="cleared"
    )
    project_archive.archive_project(session, project_id=w.project_id, actor=w.pia)
    assert _row_statuses(session, w.project_id) == ["suspended"]


# Reactivating one account by hand.


@pytest.mark.parametrize("project_status", ["suspended", "archived"])
def test_ops_cannot_reactivate_an_allocation_of_a_project_that_is_not_active(
    any_session: Session, project_status: str
) -> None:
    session = any_session
    w = world(session)
    (allocation,) = awarded(session, w).allocations
    if project_status == "suspended":
        projects.suspend_project(session, project_id=w.project_id, actor=w.ops, reason="audit")
    else:
        project_archive.archive_project(session, project_id=w.project_id, actor=w.pia)

    with pytest.raises(ProjectStatusConflict, match=f"which is {project_status}") as refused:
        ledger.set_account_status(
            session, account_id=allocation.account_id, status="active", actor=w.ops, reason="x"
        )

    assert refused.value.extra == {"current_status": project_status}
    account = ledger_queries.get_account(session, account_id=allocation.account_id)
    assert account.status is AccountStatus.SUSPENDED
    assert _row_statuses(session, w.project_id) == ["suspended"]


def test_reports_show_an_archived_projects_pending_tranche_as_lapsed(session: Session) -> None:
    w = world(session, budget=1000 * CREDIT, initial_share_percent=50, min_reviewers=1)
    first = awarded(session, w, requested={"gpu": 800 * CREDIT}, reviewers=1)
    before = program_report(session, w.program_id, utcnow())
    assert [(b.awarded, b.released, b.lapsed) for b in before.balances] == [
        (800 * CREDIT, 400 * CREDIT, 0)
    ]
    # Once the allocation has ended its tranche can never be released.
    ends = before.allocations[0].expires_at
    assert ends is not None
    ended = program_report(session, w.program_id, ends)
    assert ended.balances[0].lapsed == 400 * CREDIT

    project_archive.archive_project(session, project_id=w.project_id, actor=w.pia, reason="done")

    program = program_report(session, w.program_id, utcnow())
    (line,) = program.allocations
    assert line.allocation_id == first.allocations[0].id
    assert (line.awarded, line.released, line.lapsed) == (800 * CREDIT, 400 * CREDIT, 400 * CREDIT)
    assert program.balances[0].lapsed == program.by_project[0].lapsed == 400 * CREDIT
    assert project_report(session, w.project_id, utcnow()).balances[0].lapsed == 400 * CREDIT
    balance_rows = list(csv.DictReader(io.StringIO(to_csv(program))))
    lapsed = [row["value"] for row in balance_rows if row["metric"].startswith("lapsed")]
    assert lapsed and all(value == "400" for value in lapsed)
    assert {row["metric"] for row in balance_rows if row["metric"].startswith("lapsed")} == {
        "lapsed_credits"
    }


def test_the_funder_dashboard_shows_what_lapsed_under_awarded(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    w = world(session, budget=1000 * CREDIT, initial_share_percent=50, min_reviewers=1)
    awarded(session, w, requested={"gpu": 800 * CREDIT}, reviewers=1)
    project_archive.archive_project(session, project_id=w.project_id, actor=w.pia, reason="done")
    client = create_app(load_settings(), session_factory=joined_session_factory).test_client()
    assert w.fay.user_id is not None
    sign_in_as(client, w.fay.user_id)

    page = client.get(f"/funder/programs/{w.program_id}/dashboard").get_data(as_text=True)

    assert page.count('data-testid="lapsed">400 lapsed</div>') >= 2  # totals and the project
