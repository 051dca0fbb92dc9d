"""The people and objects the reviewer and funder browser tests start from, built
through the services (the UI steps under test are done in the browser)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from browser_helpers import LiveApp
from sqlalchemy.orm import Session

from credits.db import session_scope, utcnow
from credits.grants import funding, programs, projects, proposals, reviews
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.ledger.models import Currency

SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"
FUNDER = "officer@funder.org"
REVIEWER = "rita@review.org"
CONFLICTED = "carl@review.org"
RESEARCHER = "ada@uni.edu"
CRITERIA = [{"key": "merit", "label": "Scientific merit"}, {"key": "fit", "label": "Fit"}]
HOSTILE = "<b>bold</b><script>window.pwned = 1</script>"


def user(session: Session, email: str, role: Role, institution: str = "Uni") -> Actor:
    create_user(
        session,
        email=email,
        name=email.partition("@")[0].title(),
        roles=(role,),
        institution=institution,
        actor=SYSTEM,
        password=PASSWORD,
    )
    return actor_for_email(session, email)


def people(app: LiveApp) -> None:
    with session_scope(app.factory) as session:
        user(session, FUNDER, Role.FUNDER, "Funder")
        user(session, REVIEWER, Role.REVIEWER, "Elsewhere")
        user(session, CONFLICTED, Role.REVIEWER, "Elsewhere")
        user(session, RESEARCHER, Role.RESEARCHER, "Uni of Ice")


def open_program(app: LiveApp, *, budget_credits: int = 100) -> int:
    """A funded, open program owned by FUNDER; its id."""
    with session_scope(app.factory) as session:
        owner = actor_for_email(session, FUNDER)
        now = utcnow()
        program = programs.create_program(
            session,
            name="Compute for climate",
            description="GPU hours for climate models.",
            opens_at=now - timedelta(days=1),
            closes_at=now + timedelta(days=30),
            criteria=CRITERIA,
            min_reviewers=1,
            min_mean_score=300,
            actor=owner,
        )
        programs.open_program(session, program_id=program.id, actor=owner)
        funding.fund_program(
            session,
            program_id=program.id,
            currency=Currency.GPU,
            amount_micro=budget_credits * 1_000_000,
            key="setup",
            actor=owner,
            reason="FY27",
        )
        return program.id


def submitted_proposal(
    app: LiveApp, program_id: int, *, title: str = "Ice sheet models", credits: int = 50
) -> int:
    """A proposal by RESEARCHER's new project, submitted to the program; its id."""
    with session_scope(app.factory) as session:
        pi = actor_for_email(session, RESEARCHER)
        project = projects.create_project(
            session, title="Ice sheets", field_of_science="Glaciology", actor=pi
        )
        now = utcnow()
        proposal = proposals.create_proposal(
            session,
            program_id=program_id,
            project_id=project.id,
            kind="new",
            actor=pi,
            title=title,
            abstract=HOSTILE,
            justification="Needs GPU-hours.",
            requested={"gpu": credits * 1_000_000},
            starts_at=now + timedelta(days=1),
            ends_at=now + timedelta(days=90),
        )
        proposals.submit_proposal(session, proposal_id=proposal.id, actor=pi)
        return proposal.id


def assign(app: LiveApp, proposal_id: int, *emails: str) -> None:
    with session_scope(app.factory) as session:
        owner = actor_for_email(session, FUNDER)
        for email in emails:
            reviewer = actor_for_email(session, email)
            assert reviewer.user_id is not None
            reviews.assign_reviewer(
                session, proposal_id=proposal_id, reviewer_user_id=reviewer.user_id, actor=owner
            )


@dataclass(frozen=True)
class Budget:
    funded: int
    awarded: int


def budget(app: LiveApp, program_id: int) -> Budget:
    with session_scope(app.factory) as session:
        (line,) = [
            b
            for b in programs.get_program(session, program_id=program_id).budget
            if b.currency is Currency.GPU
        ]
        return Budget(funded=line.funded, awarded=line.awarded)


def proposal_status(app: LiveApp, proposal_id: int) -> str:
    from credits.grants.proposal_queries import load_proposal  # noqa: PLC0415

    with session_scope(app.factory) as session:
        return load_proposal(session, proposal_id).status
