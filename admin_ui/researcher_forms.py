"""Parsing the researcher's forms: a proposal, and the project page's ledger filters.

Each parser returns what the service takes plus field errors by form field
name; a page shows those errors inline and calls no service while any remain.

A proposal's kind decides its fields: ``new`` and ``renewal`` ask for amounts
and a period; a ``supplement`` names a current allocation of the program and one
amount, in that allocation's currency; an ``extension`` names one and a later
end date, and asks for no credits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from admin_ui.form_dates import day_start, next_midnight
from credits import formatting as fmt
from credits.errors import CreditsError
from credits.grants.errors import IncompleteProposal
from credits.grants.models import ProposalKind
from credits.grants.schemas import ProposalOut
from credits.id_text import id_from_text
from credits.ledger.models import Currency, TransferKind
from credits.money import InvalidCreditsAmount, format_credits, parse_credits

# Where a service's field lands on the proposal form.
PROPOSAL_FIELDS = {
    "title": "title",
    "abstract": "abstract",
    "justification": "justification",
    "requested": "requested_gpu",
    "starts_at": "starts_on",
    "ends_at": "ends_on",
    "project_id": "project_id",
    "allocation_id": "allocation_id",
    "kind": "kind",
}
ALLOCATION_KINDS = frozenset({ProposalKind.SUPPLEMENT, ProposalKind.EXTENSION})
KIND_NOTES = {
    ProposalKind.NEW: "Credits for new work, over a period you choose.",
    ProposalKind.RENEWAL: "Fresh credits to carry on work this program funded, over a new period.",
    ProposalKind.SUPPLEMENT: (
        "More credits on a current allocation from this program, in its currency, until it ends."
    ),
    ProposalKind.EXTENSION: (
        "A later end date for a current allocation from this program; no new credits."
    ),
}

# A supplement runs over its allocation's period; an extension only moves the end.
DATE_FIELDS: dict[ProposalKind, tuple[str, ...]] = {
    ProposalKind.NEW: ("starts_on", "ends_on"),
    ProposalKind.RENEWAL: ("starts_on", "ends_on"),
    ProposalKind.SUPPLEMENT: (),
    ProposalKind.EXTENSION: ("ends_on",),
}


@dataclass(frozen=True)
class AllocationChoice:
    """A current allocation a supplement or extension may name."""

    id: int
    project_id: int
    currency: str


DATE_ERROR = "enter a date as YYYY-MM-DD"


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(DATE_ERROR) from None


def day_moment(name: str, day: date) -> datetime:
    """A date field as a moment: a start at the day's first instant; an end keeps the
    whole day and is the next midnight, as a program's closing date is."""
    return next_midnight(day) if name == "ends_on" else day_start(day)


@dataclass
class ProposalForm:
    """The proposal form's values as typed, and what they parse to."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    requested: dict[str, int] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    project_id: int | None = None
    kind: ProposalKind = ProposalKind.NEW
    allocation_id: int | None = None

    @property
    def texts(self) -> dict[str, str]:
        return {name: self.values.get(name, "") for name in ("title", "abstract", "justification")}

    def content(self) -> dict[str, Any]:
        """What the proposals service takes to create or update a proposal's content."""
        return {
            "requested": self.requested,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            **self.texts,
        }


def proposal_values(proposal: ProposalOut) -> dict[str, str]:
    """A stored draft as the form shows it."""
    requested = {currency.value: amount for currency, amount in proposal.requested.items()}
    extra = next((amount for amount in requested.values() if amount), None)
    return {
        "kind": proposal.kind.value,
        "allocation_id": str(proposal.allocation_id or ""),
        "requested_extra": _credits_text(extra),
        "project_id": str(proposal.project_id),
        "title": proposal.title,
        "abstract": proposal.abstract,
        "justification": proposal.justification,
        "requested_gpu": _credits_text(requested.get(Currency.GPU.value)),
        "requested_label": _credits_text(requested.get(Currency.LABEL.value)),
        "starts_on": proposal.starts_at.date().isoformat() if proposal.starts_at else "",
        "ends_on": fmt.last_day(proposal.ends_at).isoformat() if proposal.ends_at else "",
    }


def _credits_text(micro: int | None) -> str:
    return format_credits(micro) if micro else ""


def parse_proposal(
    form: Mapping[str, str],
    *,
    need_project: bool,
    allocation: Callable[[int], AllocationChoice | None] = lambda _: None,
) -> ProposalForm:
    """The form's proposal; ``allocation`` finds a current allocation the researcher may
    name (None for any other id)."""
    values = {name: str(value) for name, value in form.items() if name != "csrf_token"}
    parsed = ProposalForm(values=values)
    try:
        parsed.kind = ProposalKind(values.get("kind", "").strip() or ProposalKind.NEW.value)
    except ValueError:
        parsed.errors["kind"] = "choose new, renewal, supplement or extension"
    if parsed.kind in ALLOCATION_KINDS:
        _parse_allocation(parsed, values, allocation)
    elif need_project:
        parsed.project_id = id_from_text(values.get("project_id", ""))
        if parsed.project_id is None:
            parsed.errors["project_id"] = "choose one of your projects"
    if parsed.kind is not ProposalKind.EXTENSION:
        _parse_amounts(parsed, values)
    for name in DATE_FIELDS[parsed.kind]:
        text = values.get(name, "").strip()
        if not text:
            continue
        try:
            setattr(parsed, name.replace("_on", "_at"), day_moment(name, parse_day(text)))
        except ValueError:
            # The last day of year 9999 parses but has no next midnight to end on.
            parsed.errors[name] = DATE_ERROR
    return parsed


def _parse_allocation(
    parsed: ProposalForm,
    values: dict[str, str],
    allocation: Callable[[int], AllocationChoice | None],
) -> None:
    text = values.get("allocation_id", "").strip()
    number = id_from_text(text)
    chosen = allocation(number) if number is not None else None
    if chosen is None:
        parsed.errors["allocation_id"] = "choose one of your current allocations from this program"
        return
    parsed.allocation_id = chosen.id
    parsed.project_id = chosen.project_id
    values["project_id"] = str(chosen.project_id)
    # A supplement's one amount is in its allocation's currency.
    values[f"requested_{chosen.currency}"] = values.get("requested_extra", "")


def _parse_amounts(parsed: ProposalForm, values: dict[str, str]) -> None:
    supplement = parsed.kind is ProposalKind.SUPPLEMENT
    for currency in Currency:
        name = f"requested_{currency.value}"
        text = values.get(name, "").strip()
        if not text or (supplement and parsed.allocation_id is None):
            continue
        try:
            parsed.requested[currency.value] = parse_credits(text, zero=True)
        except InvalidCreditsAmount as error:
            parsed.errors["requested_extra" if supplement else name] = error.detail


def proposal_errors(error: CreditsError) -> tuple[dict[str, str], str]:
    """A service's refusal as (field errors, form error)."""
    if isinstance(error, IncompleteProposal):
        missing = error.extra.get("missing") or []
        fields = {PROPOSAL_FIELDS.get(name, name): "needed before you submit" for name in missing}
        return fields, "Fill in the marked fields, then submit again. Nothing was saved."
    name = error.extra.get("field")
    if isinstance(name, str) and name in PROPOSAL_FIELDS:
        return {PROPOSAL_FIELDS[name]: str(error)}, "Nothing was saved: correct the marked field."
    return {}, f"{error} Nothing was saved."


PROJECT_FIELDS = ("title", "field_of_science", "institution")


def parse_project(form: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The new-project form's values as typed, and errors for blank required fields."""
    values = {name: str(form.get(name, "")) for name in PROJECT_FIELDS}
    errors = {
        name: message
        for name, message in (
            ("title", "give the project a title"),
            ("field_of_science", "name the project's field of science, e.g. Glaciology"),
        )
        if not values[name].strip()
    }
    return values, errors


@dataclass
class LedgerFilters:
    """The project page's ledger filters, from the query string."""

    account: int | None = None
    kind: str | None = None
    since: date | None = None
    until: date | None = None
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)

    def keeps(self, transfer: Any, account_ids: set[int]) -> bool:
        if self.kind is not None and transfer.kind.value != self.kind:
            return False
        touched = {transfer.debit_account_id, transfer.credit_account_id}
        if self.account is not None and self.account not in touched:
            return False
        if not touched & account_ids:
            return False
        day = transfer.created_at.date()
        if self.since is not None and day < self.since:
            return False
        return self.until is None or day <= self.until


def parse_ledger_filters(args: Mapping[str, str], account_ids: set[int]) -> LedgerFilters:
    filters = LedgerFilters(values={name: str(args.get(name, "")) for name in _FILTERS})
    account = filters.values["account"].strip()
    if account:
        if id_from_text(account) in account_ids:
            filters.account = id_from_text(account)
        else:
            filters.errors["account"] = "choose one of the project's accounts"
    kind = filters.values["kind"].strip()
    if kind:
        if kind in {member.value for member in TransferKind}:
            filters.kind = kind
        else:
            filters.errors["kind"] = "choose a kind from the list"
    for name in ("since", "until"):
        text = filters.values[name].strip()
        if text:
            try:
                setattr(filters, name, parse_day(text))
            except ValueError as error:
                filters.errors[name] = str(error)
    if filters.since and filters.until and filters.until < filters.since:
        filters.errors["until"] = "the end is before the start"
    return filters


_FILTERS = ("account", "kind", "since", "until")
DAY = timedelta(days=1)
