"""What of an audit row the public log publishes: the row's entry.

An entry is the row's canonical JSON (UTF-8) less every member named
``idempotency_key`` or ``request_hash``: bookkeeping a client chose for its own
requests that no reader needs. A ledger transfer's idempotency key is free text
sent in the ``Idempotency-Key`` header, where a client may well put an e-mail
address, and the log is public and permanent; the key stays in the ledger's
tables. The replay (:mod:`credits.transparency.replay`) reads a transfer's id,
kind, currency, accounts, amount and pending id, never its key.

The audit row keeps the members: the PostgreSQL ledger functions (migration
0017, frozen) write them into the row's JSON exactly as the Python path does,
so they are left out here, when the integrator builds the entries, and not in
the functions. Only the standard library is imported.
"""

from __future__ import annotations

import json
import re
from typing import Any

from credits.transparency.tiles import MAX_ENTRY_SIZE

UNPUBLISHED = frozenset({"idempotency_key", "request_hash"})
# Inside a JSON string every quote is escaped, so one of these markers right after
# "{" or "," always starts an object member: the text is searched, not parsed
# (parsing and writing a ledger entry again would cost the integrator more than
# all else it does per entry).
_MARKERS = tuple(f'"{name}":' for name in sorted(UNPUBLISHED))
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_DECODE = json.JSONDecoder().decode
# The form of credits.audit.service.canonical_json.
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

__all__ = ["MAX_ENTRY_SIZE", "UNPUBLISHED", "published_entry"]


def published_entry(canonical: str) -> bytes:
    """The log entry of an audit row whose canonical JSON is ``canonical``."""
    text = canonical
    for marker in _MARKERS:
        while (at := text.find(marker)) >= 0:
            # A member's name follows "{" or ","; after anything else (a backslash) the
            # quote is escaped inside a name such as "x\"idempotency_key", and a value
            # that is not a string (never written today) cannot be cut out as text:
            # both are parsed, the slow way.
            if text[at - 1] not in "{," or (cut := _member_span(text, at, len(marker))) is None:
                return _ENCODE(_without(_DECODE(canonical))).encode()
            text = text[: cut[0]] + text[cut[1] :]
    return text.encode()


def _member_span(text: str, at: int, name_length: int) -> tuple[int, int] | None:
    """Where the member at ``at`` lies with the comma that joins it to the member
    before it or, first in its object, to the one after it; None when its value is
    not a string."""
    value = _STRING.match(text, at + name_length)
    if value is None:
        return None
    end = value.end()
    if text[at - 1] == ",":
        return at - 1, end
    return at, end + 1 if text[end] == "," else end


def _without(value: Any) -> Any:
    """``value`` (parsed JSON) less the unpublished members, at any depth."""
    if isinstance(value, dict):
        return {k: _without(v) for k, v in value.items() if k not in UNPUBLISHED}
    if isinstance(value, list):
        return [_without(item) for item in value]
    return value
