"""Row ids typed by people: in URLs, query strings, form fields and CLI arguments."""

from __future__ import annotations

# BIGINT holds every 18-digit number; a longer one names no row.
MAX_ID_DIGITS = 18


def id_from_text(text: str) -> int | None:
    """The id ``text`` writes in ASCII digits, or None for anything else.

    ``str.isdigit`` alone also accepts digits ``int`` refuses (superscripts such as
    "²") and other scripts' digits, and a longer number than a row id can be.
    """
    text = text.strip()
    if text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS:
        return int(text)
    return None
