"""A signed checkpoint and a configured witness for the API suites that call every
operation (bad input, schemathesis): enough for a co-signature to be accepted.
A plain module imported by name."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from credits.transparency.checkpoint import Checkpoint, sign_checkpoint
from credits.transparency.merkle import EMPTY_ROOT
from credits.transparency.note import Signer
from credits.transparency.service import store_checkpoint
from credits.transparency.witness import Cosigner

ORIGIN = "credits.example.org/log"
# Fixed seeds: these keys sign test data only.
LOG_SIGNER = Signer(ORIGIN, bytes(range(32)))
WITNESS = Cosigner("witness.example.org/w1", bytes(range(32, 64)))
EMPTY = Checkpoint(ORIGIN, 0, EMPTY_ROOT)


def transparency_settings() -> dict[str, Any]:
    """Settings overrides: the log's key and origin, and the one witness."""
    return {
        "transparency_origin": ORIGIN,
        "transparency_signer_key": LOG_SIGNER.key_string(),
        "transparency_witness_keys": WITNESS.verifier.key_string(),
    }


def with_checkpoint(session: Session) -> None:
    """The empty log's signed checkpoint, as the integrator's first run stores it."""
    store_checkpoint(session, sign_checkpoint(EMPTY, [LOG_SIGNER]))


def cosign_body(_: object = None) -> dict[str, Any]:
    """The witness's co-signature of that checkpoint."""
    return {
        "checkpoint": sign_checkpoint(EMPTY, [LOG_SIGNER]).decode(),
        "signature": WITNESS.cosign(EMPTY.text(), 1_780_000_000).line().rstrip("\n"),
        "key": WITNESS.verifier.key_string(),
    }
