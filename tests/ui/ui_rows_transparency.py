"""UI access rows for the public transparency page: anyone, signed in or not."""

from __future__ import annotations

from ui_matrix import OK, UiRow, expect

ROWS = [UiRow("GET", "/transparency", expect(OK, anonymous=OK))]
