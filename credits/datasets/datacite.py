"""DataCite's REST API as :mod:`credits.datasets.doi` uses it: a client that reserves,
reads and updates DOIs, retrying 429 (honouring ``Retry-After``), 5xx and transport
errors with a bounded exponential backoff, and the errors it raises (a 4xx refusal
names DataCite's own error titles).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import requests

from credits.db import utcnow
from credits.errors import CreditsError

MEDIA_TYPE = "application/vnd.api+json"


class DoiError(CreditsError):
    """DataCite did not do what was asked; the action that needed it did not happen."""

    status: ClassVar[int] = 502
    slug: ClassVar[str] = "doi-error"
    title: ClassVar[str] = "The DOI could not be registered"


class DoiRefused(DoiError):
    """DataCite answered 4xx; ``extra["errors"]`` holds its ``{title, source}`` list."""

    slug: ClassVar[str] = "doi-refused"
    title: ClassVar[str] = "DataCite refused the DOI request"


class DoiMetadataRefused(DoiRefused):
    """DataCite answered 422: the metadata or the DOI is not acceptable to it."""

    status: ClassVar[int] = 422
    slug: ClassVar[str] = "doi-metadata-refused"
    title: ClassVar[str] = "DataCite refused the dataset's metadata"


class DoiUnavailable(DoiError):
    """DataCite kept failing (429, 5xx, no connection) through every retry."""

    status: ClassVar[int] = 503
    slug: ClassVar[str] = "doi-unavailable"
    title: ClassVar[str] = "DataCite is not answering"


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per request; waits ``base_delay_s`` doubling up to ``max_delay_s``, or
    DataCite's ``Retry-After`` up to ``max_retry_after_s``."""

    attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 30.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        return float(min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s))


@dataclass(frozen=True)
class DoiRecord:
    """A DOI as DataCite reports it."""

    doi: str
    state: str
    url: str | None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isascii() and value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return (when - utcnow()).total_seconds()


def _error_titles(response: requests.Response) -> list[dict[str, str]]:
    """DataCite's ``errors`` list as ``{title, source}``; the reason phrase if none."""
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    found = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and error.get("title"):
            item = {"title": str(error["title"])}
            if error.get("source"):
                item["source"] = str(error["source"])
            found.append(item)
    return found or [{"title": response.reason or f"HTTP {response.status_code}"}]


def _describe(errors: list[dict[str, str]]) -> str:
    return "; ".join(
        f"{e['title']} ({e['source']})" if "source" in e else e["title"] for e in errors
    )


class DataCiteClient:
    """DataCite's REST API for one repository (HTTP Basic auth, JSON:API documents)."""

    def __init__(
        self,
        url: str,
        *,
        repository_id: str,
        password: str,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        http: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.http = http or requests.Session()
        self.http.auth = (repository_id, password)
        self.http.headers.update({"Accept": MEDIA_TYPE})

    def get(self, doi: str) -> DoiRecord | None:
        """The DOI (drafts too: the request is authenticated), or None when unknown."""
        response = self._send("GET", f"/dois/{doi}", None, doing=f"read {doi}", missing_ok=True)
        return None if response is None else self._record(response)

    def reserve(self, doi: str) -> DoiRecord:
        """Creates ``doi`` as a draft; one already there (a retry) is read back."""
        body = {"data": {"type": "dois", "attributes": {"doi": doi}}}
        try:
            response = self._send("POST", "/dois", body, doing=f"reserve {doi}")
        except DoiMetadataRefused as refused:
            if not any("taken" in e["title"].lower() for e in refused.extra["errors"]):
                raise
            existing = self.get(doi)
            if existing is None:
                raise
            return existing
        assert response is not None  # noqa: S101 - missing_ok is off: a 404 raised
        return self._record(response)

    def update(self, doi: str, attributes: dict[str, Any], *, event: str | None) -> DoiRecord:
        """Sets ``attributes`` of ``doi`` and, with ``event``, moves its state
        (``publish``: findable; ``register``: registered; ``hide``: findable to registered)."""
        sent = dict(attributes) | ({"event": event} if event else {})
        body = {"data": {"id": doi, "type": "dois", "attributes": sent}}
        response = self._send("PUT", f"/dois/{doi}", body, doing=f"update {doi}")
        assert response is not None  # noqa: S101 - missing_ok is off: a 404 raised
        return self._record(response)

    def _record(self, response: requests.Response) -> DoiRecord:
        try:
            data = response.json()["data"]
            attributes = data["attributes"]
            return DoiRecord(
                doi=str(attributes.get("doi") or data["id"]).lower(),
                state=str(attributes["state"]),
                url=attributes.get("url"),
            )
        except (ValueError, KeyError, TypeError):
            raise DoiUnavailable(
                f"DataCite answered {response.status_code} with a document that is not a DOI"
            ) from None

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        doing: str,
        missing_ok: bool = False,
    ) -> requests.Response | None:
        """One request, retried on 429, 5xx and transport errors; 4xx raise DoiRefused."""
        headers = {"Content-Type": MEDIA_TYPE} if body is not None else {}
        problem = ""
        for attempt in range(1, self.retry.attempts + 1):
            retry_after = None
            try:
                response = self.http.request(
                    method,
                    self.url + path,
                    json=body,
                    headers=headers,
                    timeout=(self.retry.connect_timeout_s, self.retry.read_timeout_s),
                )
            except requests.RequestException as error:
                problem = f"no answer ({type(error).__name__})"
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status == 404 and missing_ok:
                    return None
                if status != 429 and status < 500:
                    errors = _error_titles(response)
                    kind = DoiMetadataRefused if status == 422 else DoiRefused
                    raise kind(
                        f"DataCite refused to {doing} ({status}): {_describe(errors)}",
                        datacite_status=status,
                        errors=errors,
                    )
                problem = f"{status} {_describe(_error_titles(response))}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt < self.retry.attempts:
                self.sleep(self.retry.delay(attempt, retry_after))
        raise DoiUnavailable(
            f"DataCite did not {doing} after {self.retry.attempts} attempts: {problem}"
        )
