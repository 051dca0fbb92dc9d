"""Liveness and readiness probes for the load balancer and Kubernetes.

``/healthz`` answers while the process serves requests and touches nothing
else; ``/readyz`` also asks the database for ``SELECT 1``, so a pod whose
database is gone stops receiving traffic without being restarted.
"""

from __future__ import annotations

import logging

from flask import Blueprint
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from credits.api.auth import session_factory
from credits.api.openapi import operation
from credits.db import session_scope
from credits.errors import CreditsError

logger = logging.getLogger(__name__)

blueprint = Blueprint("health", __name__)


class DatabaseUnavailable(CreditsError):
    status = 503
    slug = "database-unavailable"
    title = "Database unavailable"


class HealthOut(BaseModel):
    status: str


class ReadinessOut(BaseModel):
    status: str
    database: str


@blueprint.get("/healthz")
@operation("Liveness: the process is serving", response=HealthOut, authenticated=False)
def healthz() -> ResponseReturnValue:
    """Always 200 while the process serves; checks no dependency."""
    return HealthOut(status="ok").model_dump(mode="json")


@blueprint.get("/readyz")
@operation(
    "Readiness: the database answers",
    response=ReadinessOut,
    problems=(503,),
    authenticated=False,
)
def readyz() -> ResponseReturnValue:
    """200 when the database answers ``SELECT 1``; a 503 problem when it does not."""
    try:
        with session_scope(session_factory()) as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        # The driver's message may name the host or user; it goes to the log only.
        logger.warning("readiness check failed: %s", error)
        raise DatabaseUnavailable("The database did not answer.") from None
    return ReadinessOut(status="ready", database="ok").model_dump(mode="json")
