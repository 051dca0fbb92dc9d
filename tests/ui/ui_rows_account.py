"""UI access rows for the account page (every signed-in person's own) and the public
list of open calls (everyone, signed in or not)."""

from __future__ import annotations

from ui_matrix import OK, UiRow, expect

EVERYONE = expect(OK)


def _password(_: object) -> dict[str, str]:
    # Nobody in the world has a password: the service refuses at the current one.
    return {
        "current_password": "not the password",
        "new_password": "a new long password",
        "repeat_password": "a new long password",
    }


ROWS = [
    UiRow("GET", "/account", EVERYONE),
    UiRow(
        "POST",
        "/account",
        expect(OK, anonymous=400),
        form=lambda _: {"name": "Someone Else", "orcid": "", "institution": "Uni"},
    ),
    UiRow("POST", "/account/password", expect(422, anonymous=400), form=_password),
    UiRow("GET", "/calls", expect(OK, anonymous=OK)),
]
