"""What the funder pages show, read from the services: queues, review scores, charts.

Read-only helpers for :mod:`admin_ui.funder`; each takes the request's session.
Charts are drawn by pygal as inline SVG with its external JavaScript turned off,
so that a page never fetches anything from the internet.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

import pygal  # type: ignore[import-untyped]
from flask import url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from sqlalchemy.orm import Session

from admin_ui.charts import render_svg
from admin_ui.confirm import confirmation
from admin_ui.grants_forms import new_key
from credits import formatting as fmt
from credits.db import utcnow
from credits.grants import reviews
from credits.grants.models import ProposalStatus, TrancheStatus
from credits.grants.queries import titles_of_projects
from credits.grants.schemas import AwardOut, ProgramOut, ProposalOut, ReviewSummary
from credits.identity.access_proposals import Queue, list_queued_proposals
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import list_users
from credits.money import format_credits
from credits.reports.schemas import GroupLine, SpendLine

MICRO = 1_000_000
CLOSE_EFFECT = (
    "close program {id}, {name}, to new proposals now. Drafts can no longer be submitted"
    " to it; proposals already submitted can still be reviewed and decided."
)
DECIDABLE = frozenset({ProposalStatus.SUBMITTED, ProposalStatus.IN_REVIEW})


def criterion_means(summary: ReviewSummary, keys: list[str]) -> dict[str, int | None]:
    """The mean score of each criterion over the counted reviews, in hundredths."""
    means: dict[str, int | None] = {}
    for key in keys:
        values = [review.scores[key] for review in summary.reviews if key in review.scores]
        means[key] = sum(values) * 100 // len(values) if values else None
    return means


def queue(db: Session, program: ProgramOut, me: Actor) -> list[dict[str, Any]]:
    """The program's submitted proposals (never a draft) with their review figures."""
    page = list_queued_proposals(db, me, queue=Queue.DECIDE, program_id=program.id)
    keys = [criterion.key for criterion in program.criteria]
    # A fixed number of queries however long the queue: summaries and titles in bulk.
    summaries = reviews.review_summaries(
        db, program_id=program.id, proposal_ids=[p.id for p in page.items], actor=me
    )
    titles = titles_of_projects(db, {proposal.project_id for proposal in page.items})
    rows = []
    for proposal in page.items:
        summary = summaries[proposal.id]
        rows.append(
            {
                "proposal": proposal,
                "project": titles[proposal.project_id],
                "summary": summary,
                "means": criterion_means(summary, keys),
                "enough": len(summary.reviews) >= summary.min_reviewers,
            }
        )
    return rows


def reviewer_choices(db: Session, summary: ReviewSummary) -> list[tuple[int, str]]:
    """Active reviewers not yet assigned to the proposal: (user id, label)."""
    taken = {assignment.reviewer_user_id for assignment in summary.assignments}
    return [
        (
            user.id,
            f"{user.name} <{user.email}>" + (f", {user.institution}" if user.institution else ""),
        )
        for user in list_users(db)
        if user.is_active and Role.REVIEWER in user.roles and user.id not in taken
    ]


def user_labels(db: Session) -> dict[int, str]:
    return {user.id: f"{user.name} <{user.email}>" for user in list_users(db)}


def release_keys(award: AwardOut | None) -> dict[int, str]:
    """An idempotency key for each pending tranche's release form, made per rendering."""
    if award is None:
        return {}
    return {t.id: new_key() for t in award.tranches if t.status is TrancheStatus.PENDING}


def decision_defaults(proposal: ProposalOut) -> dict[str, str]:
    """The decision form prefilled from the request: amounts in credits and its dates."""
    today = utcnow().date()
    starts = proposal.starts_at.date() if proposal.starts_at else today
    ends = proposal.ends_at.date() if proposal.ends_at else today + timedelta(days=365)
    values = {
        f"amount_{currency.value}": format_credits(amount)
        for currency, amount in proposal.requested.items()
    }
    return values | {"starts_at": max(starts, today).isoformat(), "ends_at": ends.isoformat()}


def tranche_note(program: ProgramOut) -> str:
    share = program.initial_share_percent
    if share is None:
        return "The whole award is released at once."
    return (
        f"{share}% of each amount is released at award; the rest waits as a pending tranche"
        " until you release it on a progress report."
    )


def project_titles(spend: list[SpendLine]) -> dict[int, str]:
    """Project titles by id, for the labelling lines (every project that spent is in ``spend``)."""
    return {line.project_id: line.title for line in spend}


def chart(lines: list[GroupLine], title: str) -> Markup | None:
    """A stacked bar per project: used, held, available and expired credits."""
    if not lines:
        return None
    config = pygal.Config()
    config.js = []  # never fetch pygal's script from the internet
    config.disable_xml_declaration = True
    config.show_legend = True
    config.legend_at_bottom = True
    config.height = 120 + 48 * len(lines)
    config.title = title
    config.value_formatter = lambda value: f"{value:,.2f}"
    drawn = pygal.HorizontalStackedBar(config)
    drawn.x_labels = [f"{line.title or line.institution} ({line.currency.value})" for line in lines]
    series: dict[str, list[float]] = defaultdict(list)
    for line in lines:
        for name in ("used", "held", "available", "expired"):
            series[name].append(getattr(line, name) / MICRO)
    for name, values in series.items():
        drawn.add(name, values)
    # pygal escapes every label it draws (it builds the SVG as an element tree).
    return render_svg(drawn)


def confirm_award(would: AwardOut, title: str) -> ResponseReturnValue:
    """The award's confirmation page, restating what the rehearsal would create."""
    amounts = ", ".join(fmt.money(micro, currency) for currency, micro in would.amounts.items())
    pending = sum(tranche.amount_micro for tranche in would.tranches if tranche.released_at is None)
    later = (
        f" {fmt.money(pending)} of it wait in tranches released with progress reports."
        if pending
        else ""
    )
    return confirmation(
        title=f"Award proposal {would.proposal_id}?",
        effect=(
            f"award {amounts} to proposal {would.proposal_id}, {title or 'Untitled proposal'},"
            f" from {would.starts_at:%Y-%m-%d} to {would.ends_at:%Y-%m-%d}. The credits leave"
            f" the program's budget for project {would.project_id}'s allocation.{later}"
        ),
        warning="This cannot be undone: an award is not withdrawn, and the applicants are told.",
        confirm_label="Award",
        back=url_for("ui_funder.proposal", proposal_id=would.proposal_id),
    )
