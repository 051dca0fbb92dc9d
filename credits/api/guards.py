"""Checks every API request passes before its route runs."""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from credits.errors import InvalidInput

NUL = "\x00"


class NulCharacter(InvalidInput):
    slug = "nul-character"
    title = "Text may not contain NUL characters"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def refuse_nul_characters() -> None:
    """PostgreSQL cannot store NUL in text, and no field here needs one: refuse it
    up front as bad input rather than fail in the database."""
    where = None
    if NUL in request.path:
        where = "the path"
    elif any(_has_nul(key) or _has_nul(value) for key, value in request.args.items(multi=True)):
        where = "the query"
    elif request.is_json and _has_nul(request.get_json(silent=True)):
        where = "the body"
    if where is not None:
        raise NulCharacter(f"{where} contains a NUL character")


def init_app(app: Flask) -> None:
    app.before_request(refuse_nul_characters)
