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

import re
from collections.abc import Mapping
from typing import Any

from credits.errors import InvalidInput

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


class PersonalDataInPublicText(InvalidInput):
    slug = "personal-data-in-public-text"
    title = "Personal data in public text"


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
    ``reason`` or ``note``) when a person, not the platform, wrote them."""
    if actor.startswith(SYSTEM_ACTOR_PREFIX):
        return
    for key, value in data.items():
        if key.endswith(("reason", "note")) and isinstance(value, str):
            refuse_personal_data(value, field=key)
