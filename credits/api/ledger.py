"""Read-only ledger routes: accounts, balances and transfers under /api/v1.

Each route authenticates, checks the token's ``read`` scope, loads the account
through :func:`~credits.identity.access.get_ledger_account_for_actor` (which
answers 404 for an account the caller may not read, so ids cannot be probed),
runs one query in one transaction and renders its schema.
"""

from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from credits.api.answers import json_answer
from credits.api.auth import current_actor, session_factory
from credits.api.converters import MAX_ID
from credits.api.openapi import operation
from credits.api.paging import next_page_link
from credits.db import read_connection, session_scope
from credits.identity.access import (
    get_ledger_account_for_actor,
    list_ledger_accounts_for_actor,
    require_actor,
    require_scope,
)
from credits.identity.actor import Actor
from credits.identity.models import Scope
from credits.ledger import queries
from credits.ledger.models import AccountKind, Currency
from credits.ledger.schemas import AccountOut, BalanceOut, TransferPage

DEFAULT_PAGE = 50
MAX_PAGE = 500

blueprint = Blueprint("ledger", __name__, url_prefix="/api/v1")


class AccountFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    currency: Currency | None = None
    kind: AccountKind | None = None


class TransferQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    before: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="only transfers with a smaller id: a page's next_before",
    )
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)


class AccountList(BaseModel):
    items: list[AccountOut]


def _reader() -> Actor:
    """The caller, who must be authenticated with a token that may read."""
    actor = require_actor(current_actor())
    require_scope(actor, Scope.READ)
    return actor


@blueprint.get("/accounts")
@operation("List accounts", response=AccountList, query=AccountFilters, problems=(403,))
def list_accounts() -> ResponseReturnValue:
    """Accounts matching the filters that the caller may read, by id: ops all, a funder
    their programs' pools and allocations, members their projects' accounts."""
    actor = _reader()
    filters = AccountFilters.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        accounts = list_ledger_accounts_for_actor(
            session,
            actor,
            project_id=filters.project_id,
            currency=filters.currency,
            kind=filters.kind,
        )
    return AccountList(items=accounts).model_dump(mode="json")


@blueprint.get("/accounts/<int:account_id>")
@operation("Get an account", response=AccountOut, problems=(403, 404))
def get_account(account_id: int) -> ResponseReturnValue:
    """One account with its four counters and what is available."""
    actor = _reader()
    with read_connection(session_factory()) as connection:
        account = get_ledger_account_for_actor(connection, actor, account_id)
    return json_answer(account)


@blueprint.get("/accounts/<int:account_id>/balance")
@operation("Get an account's balance", response=BalanceOut, problems=(403, 404))
def get_balance(account_id: int) -> ResponseReturnValue:
    """Posted, held, incoming and available micro-credits."""
    actor = _reader()
    with read_connection(session_factory()) as connection:
        account = get_ledger_account_for_actor(connection, actor, account_id)
    return json_answer(queries.balance_of(account))


@blueprint.get("/accounts/<int:account_id>/transfers")
@operation(
    "List an account's transfers, newest first",
    response=TransferPage,
    query=TransferQuery,
    problems=(403, 404),
)
def list_transfers(account_id: int) -> ResponseReturnValue:
    """A page of transfers; pass ``next_before`` as ``before``, or follow the ``Link`` header."""
    actor = _reader()
    paging = TransferQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        get_ledger_account_for_actor(session, actor, account_id)
        page = queries.list_transfers(
            session, account_id=account_id, before=paging.before, limit=paging.limit
        )
    return page.model_dump(mode="json"), 200, next_page_link(paging, before=page.next_before)
