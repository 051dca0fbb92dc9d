"""A local stand-in for DataCite's REST API (the ``/dois`` part), for DOI tests.

A threaded HTTP server on 127.0.0.1 that behaves as DataCite documents:
HTTP Basic auth with the repository's id and password; JSON:API documents of
type ``dois`` sent as ``application/vnd.api+json``; ``POST /dois`` creates a
draft (a ``doi`` under the repository's prefix, or a ``prefix`` for a random
suffix; a DOI already there is 422 "This DOI has already been taken");
``GET``/``PUT``/``DELETE /dois/{doi}`` answer 404 for unknown DOIs; ``PUT``
takes attributes and an ``event`` (``publish``: draft or registered to
findable; ``register``: draft to registered; ``hide``: findable to
registered); a findable or registered DOI needs a url, creators, titles,
publisher, publication year and resource type (422 with an ``errors``
document naming each missing one); only drafts may be deleted, and nothing
returns to draft. Faults are injected per request (``fail_next``), and every
request is recorded in ``calls``. A plain module, imported by name.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

MEDIA_TYPE = "application/vnd.api+json"
REPOSITORY_ID = "CREDITS.TEST"
PASSWORD = "stub-password"
PREFIX = "10.5072"
REQUIRED_TO_REGISTER = ("url", "creators", "titles", "publisher", "publicationYear", "types")
EVENTS = {
    "publish": ({"draft", "registered", "findable"}, "findable"),
    "register": ({"draft", "registered"}, "registered"),
    "hide": ({"findable", "registered"}, "registered"),
}


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any] | None
    status: int


@dataclass
class Fault:
    """A canned answer for the next request: a status (with ``Retry-After`` and an
    errors document), or ``disconnect`` to close the connection unanswered,
    ``after`` doing the real work first (an answer lost on the way back)."""

    status: int = 500
    retry_after: str | None = None
    errors: list[dict[str, str]] | None = None
    disconnect: bool = False
    after: bool = False


@dataclass
class DataCiteStub:
    url: str = ""
    dois: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def refuse_next(self, *titles: tuple[str, str]) -> None:
        """The next request gets 422 with these ``(title, source)`` errors."""
        errors = [{"source": source, "title": title} for title, source in titles]
        self.fail_next(Fault(status=422, errors=errors))

    def state(self, doi: str) -> str:
        return str(self.dois[doi.lower()]["state"])

    def attributes(self, doi: str) -> dict[str, Any]:
        return dict(self.dois[doi.lower()])

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def _next_fault(self) -> Fault | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None


def _errors(status: int, *items: tuple[str, str | None]) -> dict[str, Any]:
    return {
        "errors": [
            {"status": str(status), "title": title} | ({"source": source} if source else {})
            for title, source in items
        ]
    }


def _missing_to_register(attributes: dict[str, Any]) -> list[tuple[str, str | None]]:
    problems: list[tuple[str, str | None]] = []
    for name in REQUIRED_TO_REGISTER:
        value = attributes.get(name)
        if not value:
            problems.append(("can't be blank", name))
    url = attributes.get("url")
    if url and not re.match(r"^https?://", str(url)):
        problems.append(("Is not a valid URL", "url"))
    year = str(attributes.get("publicationYear") or "")
    if year and not re.fullmatch(r"\d{4}", year):
        problems.append(("Is invalid", "publicationYear"))
    for creator in attributes.get("creators") or []:
        if not isinstance(creator, dict) or not creator.get("name"):
            problems.append(("Creator name can't be blank", "creators"))
    types = attributes.get("types")
    if types and not (isinstance(types, dict) and types.get("resourceTypeGeneral")):
        problems.append(("resourceTypeGeneral can't be blank", "types"))
    return problems


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read ``calls``."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: dict[str, Any] | None = None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"unparsable": raw.decode("utf-8", "replace")}
        fault = stub._next_fault()
        if fault is not None and not fault.after:
            self._fault(fault, method, body)
            return
        status, document, headers = self._route(method, body)
        if fault is not None:
            self._fault(fault, method, body)
            return
        stub.calls.append(Call(method, self.path, body, status))
        self._send(status, document, headers)

    def _fault(self, fault: Fault, method: str, body: dict[str, Any] | None) -> None:
        self.server.stub.calls.append(
            Call(method, self.path, body, 0 if fault.disconnect else fault.status)
        )
        if fault.disconnect:
            self.close_connection = True
            self.wfile.flush()
            self.connection.close()
            return
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        document = {"errors": fault.errors or [{"status": str(fault.status), "title": "Error"}]}
        self._send(fault.status, document, headers)

    def _send(self, status: int, document: dict[str, Any] | None, headers: dict[str, str]) -> None:
        payload = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", MEDIA_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        expected = base64.b64encode(f"{REPOSITORY_ID}:{PASSWORD}".encode()).decode()
        return secrets.compare_digest(header, f"Basic {expected}")

    def _refusal(
        self, method: str, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """401 without the repository's credentials; 415 or 400 for a body that is not
        a JSON:API document of type ``dois``."""
        if not self._authorised():
            return 401, _errors(401, ("Bad credentials.", None)), {}
        if method not in {"POST", "PUT"}:
            return None
        if self.headers.get("Content-Type", "").split(";")[0] != MEDIA_TYPE:
            return 415, _errors(415, ("Unsupported media type", None)), {}
        data = (body or {}).get("data")
        if (
            not isinstance(data, dict)
            or data.get("type") != "dois"
            or not isinstance(data.get("attributes"), dict)
        ):
            return 400, _errors(400, ("A JSON:API document of type dois is needed", None)), {}
        return None

    def _route(
        self, method: str, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        refusal = self._refusal(method, body)
        if refusal is not None:
            return refusal
        path = self.path.split("?", 1)[0]
        if method == "POST" and path == "/dois":
            assert body is not None
            return self._create(body["data"]["attributes"])
        match = re.fullmatch(r"/dois/(.+)", path)
        doi = "" if match is None else unquote(match.group(1)).lower()
        if doi not in self.server.stub.dois:
            return 404, _errors(404, ("The resource you are looking for doesn't exist.", None)), {}
        if method == "GET":
            return 200, self._document(doi), {}
        if method == "DELETE":
            return self._delete(doi)
        assert body is not None
        return self._update(doi, body["data"])

    def _delete(self, doi: str) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """Only a draft may be deleted; a findable or registered DOI is for ever."""
        if self.server.stub.dois[doi]["state"] != "draft":
            return 405, _errors(405, ("Method not allowed", None)), {}
        del self.server.stub.dois[doi]
        return 204, None, {}

    def _create(self, attributes: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        stub = self.server.stub
        doi = str(attributes.get("doi") or "").lower()
        if not doi:
            if attributes.get("prefix") != PREFIX:
                return 422, _errors(422, ("Prefix is not allowed", "prefix")), {}
            doi = f"{PREFIX}/{secrets.token_hex(4)}"
        if doi.split("/", 1)[0] != PREFIX or "/" not in doi:
            return 422, _errors(422, ("This DOI's prefix is not assigned to you", "doi")), {}
        if doi in stub.dois:
            return 422, _errors(422, ("This DOI has already been taken", "doi")), {}
        if attributes.get("event"):
            return 422, _errors(422, ("This stub reserves drafts only", "event")), {}
        stub.dois[doi] = {**attributes, "doi": doi, "state": "draft"}
        return 201, self._document(doi), {}

    def _update(self, doi: str, data: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        stub = self.server.stub
        if data.get("id") not in {None, doi} and str(data.get("id")).lower() != doi:
            return 422, _errors(422, ("The id does not match the URL", "id")), {}
        attributes = dict(data["attributes"])
        event = attributes.pop("event", None)
        current = stub.dois[doi]
        if str(attributes.get("doi", doi)).lower() != doi:
            return 422, _errors(422, ("The doi cannot be changed", "doi")), {}
        state = current["state"]
        if event is not None:
            if event not in EVENTS:
                return 422, _errors(422, (f"Unknown event {event}", "event")), {}
            allowed, state = EVENTS[event]
            if current["state"] not in allowed:
                title = f"Cannot {event} a {current['state']} DOI"
                return 422, _errors(422, (title, "event")), {}
        merged = {**current, **attributes, "doi": doi, "state": state}
        if state != "draft":
            problems = _missing_to_register(merged)
            if problems:
                return 422, _errors(422, *problems), {}
        stub.dois[doi] = merged
        return 200, self._document(doi), {}

    def _document(self, doi: str) -> dict[str, Any]:
        attributes = self.server.stub.dois[doi]
        return {"data": {"id": doi, "type": "dois", "attributes": attributes}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: DataCiteStub


@contextmanager
def running_datacite_stub() -> Iterator[DataCiteStub]:
    """The stub on a free port of 127.0.0.1 for the ``with`` block."""
    server = _Server(("127.0.0.1", 0), _Handler)
    stub = DataCiteStub(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.stub = stub
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
