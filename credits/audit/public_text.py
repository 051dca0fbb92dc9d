"""Free text that goes into the public, permanent transparency log.

A reason typed by a person (a take-down's, a suspension's, a decision's, an
adjustment's) is written into its audit event, and every audit event becomes an
entry of the public log, which can never be changed or erased
(docs/transparency.md#what-is-logged). Such text is about organisations and
decisions; a reason that holds an e-mail address or an ORCID iD names a person
for good, so it is refused before anything is stored, with a message saying
why. Names cannot be told from other words, so the forms and the CLI's help say
not to write them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from credits.errors import InvalidInput
from credits.transparency.entries import MAX_ENTRY_SIZE

# A local part, then domain labels that each hold a letter (so ``pkg@1.0.dev`` is
# not an address), then a top-level domain. The lookahead keeps each label one match
# (``[a-z0-9-]*[a-z][a-z0-9-]*`` splits a label many ways: cubic time on a long
# reason), and the lookbehind starts a local part only where one can start.
EMAIL_LIKE = re.compile(
    r"(?<![^\s\"@])[^\s\"@]+@(?:(?=[a-z0-9-]*[a-z])[a-z0-9-]+\.)+[a-z]{2,}\b", re.IGNORECASE
)
ORCID_LIKE = re.compile(r"\b\d{4}-\d{4}-\d{4}-\d{3}[\dX]\b")
# Events written by the platform itself carry what it saw (an exit reason, a
# pod's message), not what a person typed.
SYSTEM_ACTOR_PREFIX = "system:"
# The most one reason or note may take of an entry (UTF-8, as JSON escapes it). The
# PostgreSQL ledger functions write their events past record_events, after only
# refuse_personal_reasons has seen the reason; the rest of a ledger event (actor,
# key and reference of at most 200 characters each, ids, amounts) takes under
# 4,500 of the remaining 5,535 bytes, so such an event always fits an entry.
TEXT_MAX_BYTES = 60_000


class PersonalDataInPublicText(InvalidInput):
    slug = "personal-data-in-public-text"
    title = "Personal data in public text"


class PublicTextTooLong(InvalidInput):
    """An event too large for one entry of the log (C2SP tlog-tiles: 65,535 bytes).

    Stored, it would stop the log for good: the integrator cannot publish it, and
    audit rows can be neither changed nor deleted."""

    slug = "public-text-too-long"
    title = "Too long for the transparency log"


def json_size(value: Any) -> int:
    """The bytes ``value`` takes in an entry: canonical JSON, UTF-8."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def too_long(names: list[str], size: int, limit: int) -> PublicTextTooLong:
    """The refusal naming the texts to shorten; ``field`` is the first of them."""
    what = " and ".join(names) or "this change's event"
    return PublicTextTooLong(
        f"{what} would take {size:,} bytes in the public transparency log, whose entries"
        f" allow {limit:,}: shorten {'them' if len(names) > 1 else 'it'}",
        **({"field": names[0]} if names else {}),
    )


def refuse_long_texts(data: Mapping[str, Any]) -> None:
    """Raises PublicTextTooLong for a reason or note over TEXT_MAX_BYTES."""
    for key, value in data.items():
        # JSON writes a character in at most 6 bytes (\u001f): shorter texts always fit.
        if not (_is_text_field(key) and isinstance(value, str)) or len(value) * 6 <= TEXT_MAX_BYTES:
            continue
        if (size := json_size(value)) > TEXT_MAX_BYTES:
            raise too_long([key], size, TEXT_MAX_BYTES)


def refuse_large_entry(data: Mapping[str, Any], entry: bytes) -> None:
    """Raises PublicTextTooLong when ``entry``, the event's log entry, is over
    MAX_ENTRY_SIZE bytes, naming the event's two longest texts."""
    if len(entry) <= MAX_ENTRY_SIZE:
        return
    texts = [key for key, value in data.items() if isinstance(value, str)]
    longest = sorted(texts, key=lambda key: json_size(data[key]), reverse=True)[:2]
    raise too_long(longest, len(entry), MAX_ENTRY_SIZE)


def _is_text_field(key: str) -> bool:
    return key.endswith(("reason", "note"))


def refuse_personal_data(text: str | None, *, field: str) -> None:
    """Raises PersonalDataInPublicText when ``text`` holds an e-mail address or an
    ORCID iD; ``field`` names the input in the message."""
    if text is None:
        return
    found = "an e-mail address" if EMAIL_LIKE.search(text) else None
    if found is None and any(is_orcid(match.group()) for match in ORCID_LIKE.finditer(text)):
        found = "an ORCID iD"
    if found is not None:
        raise PersonalDataInPublicText(
            f"{field} is published in the public, permanent transparency log and may not "
            f"hold {found}: describe the decision without naming a person",
            field=field,
        )


def is_orcid(candidate: str) -> bool:
    """Whether ``0000-0002-1825-0097`` carries an ORCID iD's check character (ISO 7064
    MOD 11-2), which a budget line or ticket number of the same shape seldom does."""
    digits = candidate.replace("-", "")
    total = 0
    for digit in digits[:-1]:
        total = (total + int(digit)) * 2
    check = (12 - total % 11) % 11
    return digits[-1].upper() == ("X" if check == 10 else str(check))


def refuse_personal_reasons(actor: str, data: Mapping[str, Any]) -> None:
    """Checks an event's reasons and notes (its data's text under a key ending in
    ``reason`` or ``note``): each must fit an entry of the log, whoever wrote it,
    and hold no personal data when a person, not the platform, wrote it.

    The ledger calls this before its PostgreSQL functions append their own events,
    so both checks hold on that path too."""
    refuse_long_texts(data)
    if actor.startswith(SYSTEM_ACTOR_PREFIX):
        return
    for key, value in data.items():
        if _is_text_field(key) and isinstance(value, str):
            refuse_personal_data(value, field=key)
