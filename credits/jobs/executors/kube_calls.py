"""Calls to the Kubernetes API, sorted into transient and permanent failures.

Transient (409 Conflict, 429, 5xx, timeouts, a connection reset) are retried a
few times with backoff inside the call, honouring Retry-After, and then raised
as ``ExecutorError(transient=True)``; permanent ones (400, 403, 422, ...) at
once as ``ExecutorError(transient=False)`` with the API's own message, which
the reconciler puts on the failed job. 404 and AlreadyExists are answers, not
failures: they come back as :class:`NotFound` and :class:`AlreadyExists`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

from credits.jobs.executors.base import ExecutorError

logger = logging.getLogger(__name__)
_R = TypeVar("_R")
TRANSIENT_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


class NotFound(Exception):
    """The API answered 404."""


class AlreadyExists(Exception):
    """A create answered 409 AlreadyExists."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    first_backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        wanted = retry_after if retry_after is not None else self.first_backoff_s * 2**attempt
        return min(wanted, self.max_backoff_s)


def status_of(error: ApiException) -> tuple[str, str]:
    """(reason, message) of the ``Status`` body of an API error."""
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return str(body.get("reason") or error.reason or ""), str(body.get("message") or "")


def _retry_after(error: ApiException) -> float | None:
    headers = error.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def call(what: str, policy: RetryPolicy, fn: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
    """``fn(*args, **kwargs)`` with transient failures retried; see the module docstring."""
    failure = what
    for attempt in range(policy.attempts):
        try:
            return fn(*args, **kwargs)
        except ApiException as error:
            reason, message = status_of(error)
            if error.status == 404:
                raise NotFound(message or what) from error
            if error.status == 409 and reason == "AlreadyExists":
                raise AlreadyExists(message or what) from error
            if error.status not in TRANSIENT_STATUSES:
                detail = message or reason or f"HTTP {error.status}"
                raise ExecutorError(
                    f"{what}: {detail} (HTTP {error.status})", transient=False
                ) from error
            failure = f"{what}: {reason or 'HTTP'} {error.status} {message}".rstrip()
            wait = policy.backoff(attempt, _retry_after(error))
        except TRANSPORT_ERRORS as error:
            failure = f"{what}: {type(error).__name__}: {error}"
            wait = policy.backoff(attempt, None)
        if attempt + 1 < policy.attempts:
            logger.info("%s; retrying in %.2f s", failure, wait)
            time.sleep(wait)
    raise ExecutorError(f"{failure} (after {policy.attempts} tries)", transient=True)
