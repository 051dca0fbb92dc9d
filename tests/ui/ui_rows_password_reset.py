"""UI access rows for the forgotten-password pages: open to everyone, signed in or not
(a form posted without a session has no CSRF token, so an anonymous POST is a 400)."""

from __future__ import annotations

import uuid

from ui_matrix import OK, UiRow, expect

EVERYONE = expect(OK, anonymous=OK)
# No link exists in the world: the row's token is the id of a member, which no link
# hashes to, so every persona finds the link gone.
GONE = 410


def _unknown_address(_: object) -> dict[str, str]:
    # A new address each call, so the per-address throttle never answers instead.
    return {"email": f"nobody-{uuid.uuid4().hex[:12]}@example.org"}


def _passwords(_: object) -> dict[str, str]:
    return {"new_password": "a new long password", "repeat_password": "a new long password"}


ROWS = [
    UiRow("GET", "/forgot-password", EVERYONE),
    UiRow("POST", "/forgot-password", expect(OK, anonymous=400), form=_unknown_address),
    UiRow(
        "GET", "/reset-password/<token>", expect(GONE, anonymous=GONE), path={"token": "member_a"}
    ),
    UiRow(
        "POST",
        "/reset-password/<token>",
        expect(GONE, anonymous=400),
        path={"token": "member_a"},
        form=_passwords,
    ),
]
