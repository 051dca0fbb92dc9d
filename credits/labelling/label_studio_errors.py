"""Label Studio's refusals and outages as domain errors, and reading its answers.

Label Studio (Django REST framework) answers an error with
``{id, status_code, version, detail, exc_info}`` and, on a 400,
``validation_errors`` (field -> messages); :func:`error_message` makes one line
of them for the error a user sees.
"""

from __future__ import annotations

from typing import Any, ClassVar

import requests

from credits.errors import CreditsError


class LabelStudioError(CreditsError):
    """Label Studio did not do what was asked."""

    status: ClassVar[int] = 502
    slug: ClassVar[str] = "label-studio-error"
    title: ClassVar[str] = "Label Studio did not do what was asked"


class LabelStudioUnavailable(LabelStudioError):
    """No answer in time, a 5xx, or an answer that is not Label Studio's JSON."""

    slug: ClassVar[str] = "label-studio-unavailable"
    title: ClassVar[str] = "Label Studio is not answering"


class LabelStudioRefused(LabelStudioError):
    """Label Studio answered 4xx; ``extra["label_studio_status"]`` is its status."""

    slug: ClassVar[str] = "label-studio-refused"
    title: ClassVar[str] = "Label Studio refused the request"


def json_body(response: requests.Response, doing: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise LabelStudioUnavailable(
            f"Label Studio's answer to {doing} is not JSON (HTTP {response.status_code})"
        ) from None


def error_message(response: requests.Response, *, prefix: str) -> str:
    """Label Studio's ``detail`` and ``validation_errors`` in one line, if any."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = []
    detail = body.get("detail")
    errors = body.get("validation_errors")
    if isinstance(detail, str) and detail and not (errors and detail == "Validation error"):
        parts.append(detail)
    if isinstance(errors, dict):
        for field, problems in errors.items():
            listed = problems if isinstance(problems, list) else [problems]
            parts.append(f"{field}: {'; '.join(str(p) for p in listed)}")
    elif isinstance(errors, list):
        parts.extend(str(problem) for problem in errors)
    text = " / ".join(parts)[:500]
    return prefix + text if text else ""
