"""The request id that ties together a request's log lines, the Celery tasks it
sends and the job events it records.

An incoming ``X-Request-Id`` is kept when it is short and made of safe
characters (a proxy's or a client's id, so their logs and ours join up);
anything else is replaced by a new id, never echoed. The id lives in a context
variable, so a thread or Celery task sees only its own.
"""

from __future__ import annotations

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


def request_id_data() -> dict[str, str]:
    """``{"request_id": id}`` while one is bound, else nothing: for an event's data."""
    request_id = _current.get()
    return {} if request_id is None else {"request_id": request_id}
