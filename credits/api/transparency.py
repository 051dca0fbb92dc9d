"""The public transparency log under /api/v1/transparency, no login: the latest
signed checkpoint, its keys, tiles and entry bundles (C2SP tlog-tiles paths),
entries, inclusion and consistency proofs, the published balances at a tree
size, and witnesses' co-signatures. See docs/transparency.md.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from credits.api.auth import credits_extension, session_factory
from credits.api.converters import MAX_ID
from credits.api.openapi import operation
from credits.api.parsing import json_body
from credits.db import session_scope
from credits.errors import InvalidInput, NotFound
from credits.transparency import published
from credits.transparency.balances import published_balances
from credits.transparency.metrics import PROMETHEUS_TEXT, prometheus_text
from credits.transparency.published_schemas import (
    BalancesOut,
    ConsistencyProofOut,
    CosignIn,
    CosignOut,
    EntriesOut,
    InclusionProofOut,
    KeysOut,
    WitnessesOut,
)
from credits.transparency.service import log_status, tile_store, verifier_keys
from credits.transparency.tiles import TileError, TileNotFound, TileReader, parse_tile_path

blueprint = Blueprint("transparency", __name__, url_prefix="/api/v1/transparency")

# Full tiles and bundles within the latest checkpoint never change; a partial one
# is replaced as the log grows. Tiles past it are not served (404): never signed,
# they may still be rewritten (docs/transparency.md#sequencing).
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT_LIVED = "public, max-age=60"
CHECKPOINT_CACHE = "no-cache"
CACHE_HEADER = (("Cache-Control", "immutable for full tiles, a minute for partial ones"),)


def _settings_store() -> TileReader:
    return tile_store(credits_extension().settings)


class Size(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int | None = Field(
        default=None, ge=0, le=MAX_ID, description="a published tree size (default: the latest)"
    )


class EntriesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: int = Field(default=0, ge=0, le=MAX_ID)
    end: int | None = Field(
        default=None, ge=0, le=MAX_ID, description=f"exclusive; at most {published.MAX_ENTRIES}"
    )


class InclusionQuery(Size):
    index: int = Field(ge=0, le=MAX_ID)


class ConsistencyQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    size1: int = Field(alias="from", ge=0, le=MAX_ID, description="the older tree size")
    size2: int | None = Field(
        default=None, alias="to", ge=0, le=MAX_ID, description="default: the latest"
    )


class BalancesQuery(Size):
    program_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    project_id: int | None = Field(default=None, ge=1, le=MAX_ID)


@blueprint.get("/checkpoint")
@operation(
    "The latest signed checkpoint",
    media_type="text/plain",
    authenticated=False,
    problems=(404,),
    headers=(("Cache-Control", "no-cache: the checkpoint moves as the log grows"),),
)
def get_checkpoint() -> ResponseReturnValue:
    """A C2SP tlog-checkpoint in a signed note, with any witnesses' co-signatures."""
    with session_scope(session_factory()) as session:
        note = published.cosigned_checkpoint(session)
    if note is None:
        raise published.NoCheckpoint("the log has no checkpoint yet")
    return Response(
        note,
        content_type="text/plain; charset=utf-8",
        headers={"Cache-Control": CHECKPOINT_CACHE},
    )


@blueprint.get("/metrics")
@operation(
    "The log's state as Prometheus metrics",
    media_type="text/plain",
    authenticated=False,
    headers=(("Cache-Control", "no-cache: the figures move as the log grows"),),
)
def get_metrics() -> ResponseReturnValue:
    """Tree size, rows waiting, the integration delay and the age of the oldest row
    waiting, in Prometheus' text format, for a scraper; the same figures as the
    transparency page."""
    with session_scope(session_factory()) as session:
        status = log_status(session, credits_extension().settings)
    return Response(
        prometheus_text(status),
        content_type=PROMETHEUS_TEXT,
        headers={"Cache-Control": CHECKPOINT_CACHE},
    )


@blueprint.get("/key")
@operation("The log's verifier keys", response=KeysOut, authenticated=False)
def get_keys() -> ResponseReturnValue:
    """The note verifier key strings checkpoints are signed with: the current key
    first, then keys used before a rotation."""
    settings = credits_extension().settings
    return KeysOut(origin=settings.log_origin, keys=verifier_keys(settings)).model_dump(mode="json")


@blueprint.get("/tile/<tile:tile_path>")
@operation(
    "A tile or entry bundle",
    media_type="application/octet-stream",
    authenticated=False,
    problems=(404,),
    headers=CACHE_HEADER,
)
def get_tile(tile_path: str) -> ResponseReturnValue:
    """C2SP tlog-tiles: ``<L>/<N>[.p/<W>]`` or ``entries/<N>[.p/<W>]``, within the
    latest checkpoint's tree size."""
    path = f"tile/{tile_path}"
    try:
        tile = parse_tile_path(path)
    except TileError as error:
        raise NotFound(str(error)) from None
    with session_scope(session_factory()) as session:
        size = published.published_size(session)
    if not published.tile_published(tile, size):
        raise NotFound(f"{path} is past the latest checkpoint's tree size {size}")
    try:
        data = _settings_store().read(path)
    except TileNotFound:
        raise NotFound(f"no tile at {path}") from None
    except TileError as error:
        raise NotFound(str(error)) from None
    return Response(
        data,
        content_type="application/octet-stream",
        headers={"Cache-Control": IMMUTABLE if tile.full else SHORT_LIVED},
    )


@blueprint.get("/entries")
@operation(
    "Log entries by index",
    response=EntriesOut,
    query=EntriesQuery,
    authenticated=False,
    problems=(404,),
)
def get_entries() -> ResponseReturnValue:
    """Entries ``start`` to ``end`` (exclusive) of the latest checkpoint's tree, each
    the audit event's canonical JSON (less its idempotency key) with its leaf hash."""
    query = EntriesQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        size = published.published_size(session)
    return published.entries(_settings_store(), size, query.start, query.end).model_dump(
        mode="json"
    )


@blueprint.get("/proof/inclusion")
@operation(
    "An entry's inclusion proof",
    response=InclusionProofOut,
    query=InclusionQuery,
    authenticated=False,
    problems=(404,),
)
def get_inclusion_proof() -> ResponseReturnValue:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
    query = InclusionQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        size = published.checked_size(session, query.size)
    return published.inclusion(_settings_store(), size, query.index).model_dump(mode="json")


@blueprint.get("/proof/consistency")
@operation(
    "A consistency proof between two tree sizes",
    response=ConsistencyProofOut,
    query=ConsistencyQuery,
    authenticated=False,
    problems=(404,),
)
def get_consistency_proof() -> ResponseReturnValue:
    """RFC 9162 proof that the tree of ``from`` entries is a prefix of the one of ``to``."""
    query = ConsistencyQuery.model_validate(request.args.to_dict())
    with session_scope(session_factory()) as session:
        size2 = published.checked_size(session, query.size2)
    proof = published.consistency(_settings_store(), query.size1, size2)
    return proof.model_dump(mode="json", by_alias=True)


@blueprint.get("/balances")
@operation(
    "Ledger balances as of a log size",
    response=BalancesOut,
    query=BalancesQuery,
    authenticated=False,
)
def get_balances() -> ResponseReturnValue:
    """Each account's debits and credits, posted and pending, from the ledger's journal
    for the transfers among the first ``size`` entries: a program's accounts, a
    project's, or all. ``credits-verify`` replays the log to the same figures."""
    query = BalancesQuery.model_validate(request.args.to_dict())
    if query.program_id is not None and query.project_id is not None:
        raise InvalidInput("ask for a program's balances or a project's, not both")
    with session_scope(session_factory()) as session:
        size = published.checked_size(session, query.size)
        balances = published_balances(
            session, size=size, program_id=query.program_id, project_id=query.project_id
        )
    return balances.model_dump(mode="json")


@blueprint.get("/witnesses")
@operation("Witnesses and their co-signatures", response=WitnessesOut, authenticated=False)
def get_witnesses() -> ResponseReturnValue:
    """Each witness's largest co-signed size, and the latest checkpoint's co-signatures."""
    with session_scope(session_factory()) as session:
        return published.witnesses(session).model_dump(mode="json")


@blueprint.post("/witnesses/cosign")
@operation(
    "Hand in a witness's co-signature",
    response=CosignOut,
    body=CosignIn,
    authenticated=False,
    problems=(403,),
)
def post_cosignature() -> ResponseReturnValue:
    """A witness listed in ``CREDITS_TRANSPARENCY_WITNESS_KEYS`` hands in its
    cosignature/v1 line for a checkpoint this log published; it is checked, stored
    once per witness and size, and shown under ``witnesses``."""
    submitted = json_body(CosignIn)
    keys = credits_extension().settings.witness_keys
    with session_scope(session_factory()) as session:
        result = published.accept_cosignature(session, submitted, keys)
    return result.model_dump(mode="json")
