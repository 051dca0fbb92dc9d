"""The request id that ties together a request's log lines, the Celery tasks it
sends and the job events it records.

An incoming ``X-Request-Id`` is kept when it is short and made of safe
characters (a proxy's or a client's id, so their logs and ours join up);
anything else is replaced by a new id, never echoed. The id lives in a context
variable, so a thread or Celery task sees only its own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

HEADER = "X-Request-Id"
MAX_LENGTH = 64
# Letters, digits and the separators UUIDs, ULIDs and proxies' ids use: nothing that
# could break a log line, a header or a JSON document.
_SAFE = re.compile(r"[A-Za-z0-9._:-]{8,64}")

# What an audit event keeps as is: our own ids and UUIDs, which carry no one's words.
_OPAQUE = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_current: ContextVar[str | None] = ContextVar("credits_request_id", default=None)


def new_request_id() -> str:
    return secrets.token_hex(16)


def accepted_request_id(incoming: str | None) -> str:
    """``incoming`` when it is a safe id, else a new one."""
    if incoming is not None and _SAFE.fullmatch(incoming):
        return incoming
    return new_request_id()


def current_request_id() -> str | None:
    return _current.get()


def bind_request_id(request_id: str | None) -> Token[str | None]:
    """Makes ``request_id`` the current one; give the token to :func:`reset_request_id`."""
    return _current.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    _current.reset(token)


@contextmanager
def request_id_bound(request_id: str | None) -> Iterator[None]:
    token = bind_request_id(request_id)
    try:
        yield
    finally:
        reset_request_id(token)


def public_request_id(request_id: str) -> str:
    """The request id as an audit event records it.

    Audit events are published in the transparency log for good, so an id the
    caller chose freely goes there only as a digest (``sha256:`` and 32 hex
    digits): our own ids and UUIDs as they are, anything else never as text.
    Ops find the event from a log line's id by the same digest.
    """
    if _OPAQUE.fullmatch(request_id):
        return request_id
    return "sha256:" + hashlib.sha256(request_id.encode()).hexdigest()[:32]


def request_id_data() -> dict[str, str]:
    """``{"request_id": ...}`` while one is bound, else nothing: for an audit event's data
    (see :func:`public_request_id`)."""
    request_id = _current.get()
    return {} if request_id is None else {"request_id": public_request_id(request_id)}
