"""Shapes of the public transparency API: balances, entries, proofs, witnesses.

Hashes travel as lower-case hex; amounts are integer micro-credits.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AccountBalanceOut(BaseModel):
    """One ledger account's four counters after the first ``size`` log entries."""

    account_id: int
    code: str
    currency: str
    kind: str
    program_id: int | None = Field(description="the program it belongs to, if any")
    project_id: int | None = Field(description="the project it belongs to, if any")
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


class BalancesOut(BaseModel):
    """Balances as the ledger entries among the first ``size`` log entries leave them."""

    size: int
    program_id: int | None
    project_id: int | None
    accounts: list[AccountBalanceOut]


class EntryOut(BaseModel):
    index: int
    entry: str = Field(
        description="the log entry: the audit event's canonical JSON, without idempotency keys"
    )
    leaf_hash: str = Field(description="SHA-256(0x00 || entry), hex")


class EntriesOut(BaseModel):
    size: int = Field(description="the tree size the entries were read at")
    entries: list[EntryOut]


class InclusionProofOut(BaseModel):
    index: int
    size: int
    leaf_hash: str
    root_hash: str
    proof: list[str] = Field(description="RFC 9162 PATH(index, D[0:size]), hex, leaf side first")


class ConsistencyProofOut(BaseModel):
    size1: int = Field(alias="from")
    size2: int = Field(alias="to")
    root1: str
    root2: str
    proof: list[str] = Field(description="RFC 9162 PROOF(from, D[0:to]), hex")

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class KeysOut(BaseModel):
    origin: str
    keys: list[str] = Field(description="note verifier keys: the current one first, then old ones")


class CosignatureOut(BaseModel):
    witness: str
    key_id: str
    size: int
    signature: str = Field(description="the note signature line, without its newline")
    received_at: datetime


class WitnessOut(BaseModel):
    witness: str
    key_id: str
    last_size: int = Field(description="the largest tree size it co-signed")
    last_at: datetime


class WitnessesOut(BaseModel):
    witnesses: list[WitnessOut]
    cosignatures: list[CosignatureOut] = Field(description="the latest checkpoint's co-signatures")


class CosignIn(BaseModel):
    """A witness hands in its co-signature of a checkpoint the log published."""

    checkpoint: str = Field(description="the checkpoint's signed note, as the log served it")
    signature: str = Field(description="the witness's cosignature/v1 note signature line")
    key: str = Field(description="the witness's verifier key (type 0x04)")


class CosignOut(BaseModel):
    witness: str
    key_id: str
    size: int
    stored: bool = Field(description="false when this co-signature was already stored")
