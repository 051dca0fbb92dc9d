"""Usage ingestion: meters outside the platform report what projects used.

``POST /api/v1/usage/records`` takes up to 1,000 records and answers one
verdict per record (accepted, duplicate, rejected with a reason). It needs a
token that names the ``meter`` scope (a login or an unscoped token is not
enough), whose user is ops or on each record's project.
Resending a batch is safe: records are unique by (source, record_id). A batch
holding a record that claims more GPU time than its window and GPUs hold is
refused whole (422 ``implausible-usage``, one error per such record).
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint
from flask.typing import ResponseReturnValue

from credits.api.answers import json_answer
from credits.api.auth import credits_extension, current_actor, session_factory
from credits.api.openapi import operation
from credits.api.parsing import json_body
from credits.db import run_in_transaction, utcnow
from credits.identity.access import require_actor
from credits.metering.ingest import ingest_batch, require_meter_token
from credits.metering.schemas import UsageBatchIn, UsageBatchOut

blueprint = Blueprint("usage", __name__, url_prefix="/api/v1/usage")


@blueprint.post("/records")
@operation(
    "Report usage records",
    body=UsageBatchIn,
    response=UsageBatchOut,
    problems=(400, 403, 415, 422),
)
def report_usage() -> ResponseReturnValue:
    """Stores each acceptable record as pending usage, settled into the ledger by the
    metering task; the answer lists every record's outcome in the order sent."""
    actor = require_actor(current_actor())
    require_meter_token(actor)
    settings = credits_extension().settings
    batch = json_body(UsageBatchIn, max_bytes=settings.usage_request_max_bytes)
    window = timedelta(hours=settings.usage_late_window_hours)
    now = utcnow()
    result = run_in_transaction(
        session_factory(),
        lambda session: ingest_batch(
            session,
            batch,
            actor=actor,
            late_window=window,
            now=now,
            max_gpus=settings.usage_max_gpus,
        ),
    )
    return json_answer(result)
