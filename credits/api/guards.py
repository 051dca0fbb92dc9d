"""Checks every request passes before its route runs: no NUL in its path or query.

PostgreSQL cannot store NUL in text, and no field here needs one. The body is
checked by :mod:`credits.api.parsing` when a route reads it, after the caller
is authenticated: this hook reads no body, so an anonymous request costs nothing.
"""

from __future__ import annotations

from flask import Flask, request

from credits.api.parsing import NulCharacter

NUL = "\x00"


def refuse_nul_characters() -> None:
    """Refuses a NUL in the path or the query as bad input, rather than fail in the database."""
    where = None
    if NUL in request.path:
        where = "the path"
    elif any(NUL in key or NUL in value for key, value in request.args.items(multi=True)):
        where = "the query"
    if where is not None:
        raise NulCharacter(f"{where} contains a NUL character")


def init_app(app: Flask) -> None:
    app.before_request(refuse_nul_characters)
