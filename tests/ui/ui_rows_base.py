"""UI access rows for the pages every user has: home and API tokens."""

from __future__ import annotations

from ui_matrix import LOGIN, OK, UiRow, expect

EVERYONE = expect(OK)

ROWS = [
    UiRow("GET", "/", EVERYONE),
    UiRow("GET", "/tokens", EVERYONE),
    UiRow("POST", "/tokens", expect(OK, anonymous=400), form=lambda _: {"name": "m", "days": "90"}),
    # A token that is not the caller's is not found; the world gives nobody a UI token.
    UiRow(
        "POST",
        "/tokens/<int:token_id>/revoke",
        expect(404, anonymous=400),
        {"token_id": "member_a"},
    ),
    # Sign out everywhere: every signed-in persona ends up at the sign-in page.
    UiRow("POST", "/sessions/end", expect(LOGIN, anonymous=400)),
]
