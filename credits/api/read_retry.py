"""A read that met a database connection cut under it is run once more.

A request already inside a transaction when PostgreSQL restarts, or when its
connection is terminated, fails with the connection invalidated; the pool is then
renewed. A GET or HEAD that records nothing may simply run again on a fresh
connection, so the caller sees an answer instead of a 500. Requests that write,
and GETs marked ``@writes``, are never run twice: whether the first attempt's work
was committed cannot be known here.
"""

from __future__ import annotations

import logging

from flask import Flask, g, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DBAPIError

from credits.api.auth import SAFE_METHODS, WRITES_KEY

logger = logging.getLogger(__name__)


class RetryingReadsFlask(Flask):
    """Flask, with a safe request dispatched once more after a lost connection."""

    def dispatch_request(self) -> ResponseReturnValue:
        try:
            return super().dispatch_request()
        except DBAPIError as error:
            if not _may_run_again(error):
                raise
            logger.warning("database connection lost during %s; running it again", request.path)
            return super().dispatch_request()


def _may_run_again(error: DBAPIError) -> bool:
    return (
        error.connection_invalidated
        and request.method in SAFE_METHODS
        and not g.get(WRITES_KEY, False)
    )
