"""GPU pool routes under /api/v1/pool: flavours and their effective-dated rates.

Any token that may read sees the flavours and their rate history; only ops,
with a token that may write, add a flavour or a rate version. Rates are
integer micro-credits per GPU-hour; times are ISO 8601 with a timezone.
"""

from __future__ import annotations

from flask import Blueprint, url_for
from flask.typing import ResponseReturnValue

from credits.api.auth import current_actor, session_factory
from credits.api.openapi import operation
from credits.api.parsing import json_body
from credits.db import session_scope, utcnow
from credits.identity.access import require_actor, require_any_role, require_scope
from credits.identity.actor import Actor
from credits.identity.models import Role, Scope
from credits.pool import service
from credits.pool.schemas import (
    FlavourChange,
    FlavourIn,
    FlavourList,
    FlavourOut,
    RateIn,
    RateList,
    RateOut,
)

blueprint = Blueprint("pool", __name__, url_prefix="/api/v1/pool")


def _reader() -> Actor:
    """The caller, who must be authenticated with a token that may read."""
    actor = require_actor(current_actor())
    require_scope(actor, Scope.READ)
    return actor


def _operator() -> Actor:
    """The caller, who must hold the ops role and a token that may write."""
    actor = require_actor(current_actor())
    require_scope(actor, Scope.WRITE)
    require_any_role(actor, Role.OPS)
    return actor


@blueprint.get("/flavours")
@operation("List GPU flavours", response=FlavourList, problems=(403,))
def list_flavours() -> ResponseReturnValue:
    """Every GPU flavour in the pool, by name."""
    _reader()
    with session_scope(session_factory()) as session:
        flavours = service.list_flavours(session)
    return FlavourList(items=flavours).model_dump(mode="json")


@blueprint.get("/flavours/<name>")
@operation("Get a GPU flavour", response=FlavourOut, problems=(403, 404))
def get_flavour(name: str) -> ResponseReturnValue:
    """One flavour: the node label value that selects it, GPU memory, GPUs per node."""
    _reader()
    with session_scope(session_factory()) as session:
        flavour = service.get_flavour(session, name=name)
    return flavour.model_dump(mode="json")


@blueprint.get("/flavours/<name>/rates")
@operation("List a flavour's rate versions", response=RateList, problems=(403, 404))
def list_rates(name: str) -> ResponseReturnValue:
    """Rate history, newest effective_from first; the version in force now has in_force."""
    _reader()
    with session_scope(session_factory()) as session:
        rates = service.list_rates(session, flavour=name)
    return RateList(items=rates).model_dump(mode="json")


@blueprint.post("/flavours")
@operation(
    "Add a GPU flavour",
    response=FlavourOut,
    body=FlavourIn,
    status=201,
    problems=(400, 403, 409, 415, 422),
)
def add_flavour() -> ResponseReturnValue:
    """Ops only. Body: a FlavourIn document; the new flavour has no rate until one is set."""
    actor = _operator()
    body = json_body(FlavourIn)
    with session_scope(session_factory()) as session:
        flavour = service.add_flavour(session, **body.model_dump(), actor=actor)
    location = url_for(".get_flavour", name=flavour.name)
    return flavour.model_dump(mode="json"), 201, {"Location": location}


@blueprint.patch("/flavours/<name>")
@operation(
    "Change a GPU flavour's checkpoint grace cap",
    response=FlavourOut,
    body=FlavourChange,
    problems=(400, 403, 404, 415, 422),
)
def change_flavour(name: str) -> ResponseReturnValue:
    """Ops only. Body: a FlavourChange document; jobs already submitted keep their grace."""
    actor = _operator()
    body = json_body(FlavourChange)
    with session_scope(session_factory()) as session:
        flavour = service.set_checkpoint_grace_cap(
            session,
            name=name,
            max_checkpoint_grace_seconds=body.max_checkpoint_grace_seconds,
            actor=actor,
        )
    return flavour.model_dump(mode="json")


@blueprint.post("/flavours/<name>/rates")
@operation(
    "Set a flavour's rate from a time on",
    response=RateOut,
    body=RateIn,
    status=201,
    problems=(400, 403, 404, 409, 415, 422),
)
def set_rate(name: str) -> ResponseReturnValue:
    """Ops only. Body: a RateIn document; effective_from may not lie in the past."""
    actor = _operator()
    body = json_body(RateIn)
    with session_scope(session_factory()) as session:
        rate = service.set_rate(
            session,
            flavour=name,
            credits_per_gpu_hour_micro=body.micro_credits_per_gpu_hour,
            effective_from=body.effective_from or utcnow(),
            actor=actor,
            reason=body.reason,
        )
    return rate.model_dump(mode="json"), 201
