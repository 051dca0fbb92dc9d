"""Funding a program: credits move from the mint into the program's pool.

A program owns one pool account per currency (opened when the program is
created); funding is one audited ledger grant into it, allowed in every
program state. Awards (issue #3) will move credits out of the pool.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from credits.grants.errors import InvalidProgram, ProgramForbidden
from credits.grants.queries import load_program, owner_ids, pool_code, render_program
from credits.grants.schemas import FundingOut
from credits.identity.access import can_administer_program
from credits.identity.actor import Actor
from credits.ledger import journal
from credits.ledger.errors import ReasonRequired
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import get_account_by_code, system_account_id
from credits.ledger.service import grant

# The ledger allows 200 characters; a funding key is stored with a prefix.
FUND_KEY_MAX_LENGTH = 150


def fund_program(
    session: Session,
    *,
    program_id: int,
    currency: Currency | str,
    amount_micro: int,
    key: str,
    actor: Actor,
    reason: str,
) -> FundingOut:
    """Moves ``amount_micro`` from the currency's source account into the program's pool.

    One audited ledger grant. The key is scoped to the program: sending it
    again with the same request replays the first result and moves nothing.
    Raises ProgramNotFound, ProgramForbidden, ReasonRequired, InvalidAmount,
    InvalidInput (currency, key), IdempotencyKeyReused.
    """
    program = load_program(session, program_id)
    if not can_administer_program(actor, owner_ids=owner_ids(program)):
        raise ProgramForbidden(f"only an owner of program {program.id} or ops may fund it")
    checked = journal.check_currency(currency)
    if not isinstance(reason, str) or not reason.strip():
        raise ReasonRequired("funding a program needs a reason")
    if len(journal.check_key(key)) > FUND_KEY_MAX_LENGTH:
        raise InvalidProgram(
            f"an idempotency key is at most {FUND_KEY_MAX_LENGTH} characters", field="key"
        )
    pool = get_account_by_code(session, code=pool_code(program.id, checked))
    result = grant(
        session,
        key=f"program:{program.id}:fund:{key}",
        from_account_id=system_account_id(session, AccountKind.SOURCE, checked),
        to_account_id=pool.id,
        amount=amount_micro,
        actor=actor,
        reason=reason.strip(),
        reference=f"program:{program.id}",
    )
    (budget,) = [
        line for line in render_program(session, program).budget if line.currency is checked
    ]
    return FundingOut(
        program_id=program.id,
        transfer=result.transfers[0],
        budget=budget,
        replayed=result.replayed,
    )
