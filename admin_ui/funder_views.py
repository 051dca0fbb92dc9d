"""What the funder pages show, read from the services: queues, review scores, charts.

Read-only helpers for :mod:`admin_ui.funder`; each takes the request's session.
Charts are drawn by pygal as inline SVG with its external JavaScript turned off,
so that a page never fetches anything from the internet.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
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
from credits.errors import NotFound
from credits.grants import reviews
from credits.grants.models import ProposalKind, ProposalStatus, TrancheStatus
from credits.grants.queries import titles_of_projects
from credits.grants.schemas import (
    AllocationOut,
    AwardOut,
    ProgramOut,
    ProposalOut,
    ReviewSummary,
)
from credits.identity.access_proposals import (
    Queue,
    get_allocation_for_actor,
    list_queued_proposals,
)
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import list_users
from credits.ledger.models import Currency
from credits.money import format_credits
from credits.reports.schemas import GroupLine, SpendLine

MICRO = 1_000_000
CLOSE_EFFECT = (
    "close program {id}, {name}, to new proposals now. Drafts can no longer be submitted"
    " to it; proposals already submitted can still be reviewed and decided."
)
DECIDABLE = frozenset({ProposalStatus.SUBMITTED, ProposalStatus.IN_REVIEW})
CURRENCIES = tuple(currency.value for currency in Currency)


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


@dataclass(frozen=True)
class DecisionFields:
    """The decision form's inputs for a proposal's kind, as the award service takes them.

    New and renewal: an amount per currency and a period. A supplement: one amount,
    in its allocation's currency; the allocation keeps its dates. An extension: the
    allocation's new end date, and no credits. ``target`` is the allocation a
    supplement or extension names, when the funder can read it.
    """

    kind: ProposalKind
    currencies: tuple[str, ...]
    dates: tuple[str, ...]
    target: AllocationOut | None = None

    @property
    def names(self) -> list[str]:
        """The form fields this kind posts (besides the reasons and the key)."""
        return [f"amount_{currency}" for currency in self.currencies] + list(self.dates)

    @property
    def service_fields(self) -> dict[str, str]:
        """Where a refusal of the award service lands on this form: the service's field
        (or currency) to the form's input; anything else is shown above the form."""
        fields = {"reason": "reason", "override_reason": "override_reason"}
        fields |= {name: name for name in self.dates}
        fields |= {currency: f"amount_{currency}" for currency in self.currencies}
        if self.currencies:
            fields["amounts"] = f"amount_{self.currencies[0]}"
        return fields


def decision_for(db: Session, me: Actor, proposal: ProposalOut) -> DecisionFields:
    """The decision form of the proposal's kind, with the allocation a supplement or
    extension names (None when the funder may not see it)."""
    target: AllocationOut | None = None
    if proposal.allocation_id is not None:
        try:
            target = get_allocation_for_actor(db, me, proposal.allocation_id)
        except NotFound:
            target = None
    return decision_fields(proposal, target)


def decision_fields(proposal: ProposalOut, target: AllocationOut | None) -> DecisionFields:
    """The decision form of ``proposal``; ``target`` is the allocation it names, if any."""
    kind = proposal.kind
    if kind is ProposalKind.EXTENSION:
        return DecisionFields(kind, (), ("ends_at",), target)
    if kind is ProposalKind.SUPPLEMENT:
        currencies = (target.currency.value,) if target else CURRENCIES
        return DecisionFields(kind, currencies, (), target)
    return DecisionFields(kind, CURRENCIES, ("starts_at", "ends_at"))


def decision_defaults(proposal: ProposalOut) -> dict[str, str]:
    """The decision form prefilled from the request: amounts in credits and its dates."""
    today = utcnow().date()
    starts = proposal.starts_at.date() if proposal.starts_at else today
    ends = fmt.last_day(proposal.ends_at) if proposal.ends_at else today + timedelta(days=365)
    values = {
        f"amount_{currency.value}": format_credits(amount)
        for currency, amount in proposal.requested.items()
        if amount > 0  # a currency asked for at 0 is left blank: an award of 0 is refused
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


def _pending(would: AwardOut) -> str:
    """What of the award waits in tranches, per currency: '50 GPU credits, 5 labelling
    credits'; empty when nothing waits."""
    currency_of = {allocation.id: allocation.currency for allocation in would.allocations}
    pending: dict[Currency | None, int] = defaultdict(int)
    for tranche in would.tranches:
        if tranche.released_at is None:
            pending[currency_of.get(tranche.allocation_id)] += tranche.amount_micro
    return ", ".join(fmt.money(micro, currency) for currency, micro in pending.items() if micro)


def _award_effect(would: AwardOut, name: str, decision: DecisionFields) -> str:
    amounts = ", ".join(fmt.money(micro, currency) for currency, micro in would.amounts.items())
    pending = _pending(would)
    later = f" {pending} of it wait in tranches released with progress reports." if pending else ""
    proposal = f"proposal {would.proposal_id}, {name}"
    period = f"{fmt.from_day(would.starts_at)} to {fmt.until_day(would.ends_at)}"
    target = would.allocations[0].id if would.allocations else None
    if decision.kind is ProposalKind.EXTENSION:
        now_ends = decision.target.expires_at if decision.target else None
        was = f" Today it ends on {fmt.until_day(now_ends)}." if now_ends else ""
        return (
            f"extend allocation #{target} of project {would.project_id} to end on"
            f" {fmt.until_day(would.ends_at)}, for {proposal}.{was} No credits move."
        )
    if decision.kind is ProposalKind.SUPPLEMENT:
        return (
            f"award {amounts} to {proposal}, into allocation #{target}, which keeps its"
            f" period, {period}. The credits leave the program's budget for project"
            f" {would.project_id}'s allocation.{later}"
        )
    return (
        f"award {amounts} to {proposal}, from {period}. The credits leave"
        f" the program's budget for project {would.project_id}'s allocation.{later}"
    )


def confirm_award(would: AwardOut, title: str, decision: DecisionFields) -> ResponseReturnValue:
    """The award's confirmation page, restating what the rehearsal would create or change."""
    return confirmation(
        title=f"Award proposal {would.proposal_id}?",
        effect=_award_effect(would, title or "Untitled proposal", decision),
        warning="This cannot be undone: an award is not withdrawn, and the applicants are told.",
        confirm_label="Award",
        back=url_for("ui_funder.proposal", proposal_id=would.proposal_id),
    )
