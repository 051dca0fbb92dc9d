"""The one place the JSON API reads what a request carries: its JSON body and its
``Idempotency-Key`` header.

Routes call these after they have authenticated the caller, so an anonymous
request is refused (401) before a byte of its body is read. A body is held to
these rules, in this order, each a problem document:

- it is sent as ``application/json`` (or ``application/*+json``), in UTF-8: else 415
  ``unsupported-media-type``;
- it is at most ``CREDITS_REQUEST_MAX_BYTES`` long (usage ingestion:
  ``CREDITS_USAGE_REQUEST_MAX_BYTES``): else 413, from the declared length before
  anything is read;
- it nests at most :data:`MAX_DEPTH` arrays and objects deep, counted before it is
  parsed, so that the parser never recurses deeper: else 400 ``json-too-deep``;
- it is JSON (``NaN`` and ``Infinity`` are not): else 400 ``malformed-json``;
- its numbers fit: integers in 64 bits, other numbers finite doubles: else 422
  ``number-out-of-range``;
- its text, keys and values alike, holds no NUL character and no unpaired UTF-16
  surrogate (neither can be stored, and no field needs one): else 422
  ``nul-character`` or ``lone-surrogate``;

and then the route's pydantic model validates it (422 ``invalid-input``). An
action whose body is optional takes an absent (empty) body as the model's
defaults; a body that is there is held to every rule above.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, NoReturn, TypeVar

from flask import request
from pydantic import BaseModel, ConfigDict

from credits.api.problems import MalformedJson
from credits.errors import CreditsError, InvalidInput

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 64
JSON_MEDIA_TYPE = "application/json"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# The most any route's key may hold: funding prefixes its key to make a ledger key.
IDEMPOTENCY_KEY_MAX_LENGTH = 150
# Printable ASCII, not starting or ending with a space (HTTP strips those anyway).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT64_DIGITS = 19

# A JSON string, or an unterminated one running to the end of the text (the parser
# stops there, so nothing after it is nested any deeper). Possessive: linear time.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# Where a NUL or a surrogate can come from: JSON forbids raw control characters in
# strings and strict UTF-8 has no surrogates, so only these escapes make one.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])")
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


class UnsupportedMediaType(CreditsError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class JsonTooDeep(CreditsError):
    status = 400
    slug = "json-too-deep"
    title = "JSON nested too deep"


class NumberOutOfRange(InvalidInput):
    slug = "number-out-of-range"
    title = "Number out of range"


class NulCharacter(InvalidInput):
    slug = "nul-character"
    title = "Text may not contain NUL characters"


class LoneSurrogate(InvalidInput):
    slug = "lone-surrogate"
    title = "Text may not contain unpaired surrogates"


class IdempotencyKeyRequired(CreditsError):
    status = 400
    slug = "idempotency-key-required"
    title = "Idempotency-Key header required"


class InvalidIdempotencyKey(CreditsError):
    status = 400
    slug = "invalid-idempotency-key"
    title = "Invalid Idempotency-Key header"


class NoInput(BaseModel):
    """The body of an action that takes no input: none, or ``{}``."""

    model_config = ConfigDict(extra="forbid")


def json_body(model: type[M], *, max_bytes: int | None = None) -> M:
    """The request's JSON body, checked and validated by ``model``; ``max_bytes``
    replaces the app's size limit for this request."""
    return model.model_validate(_read_json(required=True, max_bytes=max_bytes))


def optional_json_body(model: type[M]) -> M:
    """Like :func:`json_body`, but no body at all is ``model``'s defaults."""
    return model.model_validate(_read_json(required=False, max_bytes=None))


def idempotency_key(action: str) -> str:
    """The ``Idempotency-Key`` header: required, 1 to 150 printable ASCII characters."""
    value = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if not value:
        raise IdempotencyKeyRequired(f"{action} needs an {IDEMPOTENCY_HEADER} header")
    if len(value) > IDEMPOTENCY_KEY_MAX_LENGTH or not _IDEMPOTENCY_KEY.match(value):
        raise InvalidIdempotencyKey(
            f"an {IDEMPOTENCY_HEADER} is 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII "
            "characters",
            max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        )
    return value


def _read_json(*, required: bool, max_bytes: int | None) -> Any:
    declared = request.headers.get("Content-Type")
    if declared is not None:
        _check_media_type()
    if max_bytes is not None:
        request.max_content_length = max_bytes
    raw = request.get_data(cache=True)
    if not raw:
        if not required:
            return {}
        if declared is None:
            _refuse_media_type()
        raise MalformedJson("the request body is empty; send a JSON document")
    if declared is None:
        _refuse_media_type()
    return parse_json(raw)


def _check_media_type() -> None:
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if not request.is_json or charset not in {"utf-8", "utf8"}:
        _refuse_media_type()


def _refuse_media_type() -> NoReturn:
    raise UnsupportedMediaType(f"send the request body as {JSON_MEDIA_TYPE} in UTF-8")


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON, held to the rules of this module (bar the media type and size)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson("the request body is not UTF-8") from None
    check_depth(text)
    try:
        value = json.loads(
            text, parse_int=_int64, parse_float=_finite, parse_constant=_not_json_constant
        )
    except ValueError as error:
        raise MalformedJson(f"the request body is not valid JSON: {_where(error)}") from None
    if _SUSPECT_ESCAPE.search(text):
        check_text(value)
    return value


def check_depth(text: str) -> None:
    """Raises JsonTooDeep when ``text`` nests arrays and objects over MAX_DEPTH deep,
    without parsing it: strings are dropped, then the brackets are counted."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH:
        raise JsonTooDeep(f"the request body nests more than {MAX_DEPTH} levels deep")


def check_text(value: Any) -> None:
    """Raises NulCharacter or LoneSurrogate for the first string in ``value``, a key or
    a value at any depth, that holds one; walks with a stack, never recursing."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, str):
            _check_string(item, loc)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key, loc)
                stack.append(((*loc, key), child))
        elif isinstance(item, list):
            stack.extend(((*loc, index), child) for index, child in enumerate(item))


def _check_string(text: str, loc: tuple[str | int, ...]) -> None:
    found = _BAD_TEXT.search(text)
    if found is None:
        return
    error: type[InvalidInput] = NulCharacter if found.group() == "\x00" else LoneSurrogate
    what = "a NUL character" if error is NulCharacter else "an unpaired surrogate"
    field = {"loc": list(loc), "msg": f"text contains {what}", "type": error.slug}
    raise error(f"text in the request body contains {what}", errors=[field])


def _int64(digits: str) -> int:
    # The length first: int() of a few thousand digits is slow, and refused past 4,300.
    if len(digits.lstrip("-")) > _INT64_DIGITS or not INT64_MIN <= int(digits) <= INT64_MAX:
        _out_of_range()
    return int(digits)


def _finite(digits: str) -> float:
    number = float(digits)
    if not math.isfinite(number):
        _out_of_range()
    return number


def _out_of_range() -> NoReturn:
    raise NumberOutOfRange(
        "a number in the request body is out of range: integers must fit in 64 bits, "
        "other numbers in a double"
    )


def _not_json_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _where(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    return str(error)
