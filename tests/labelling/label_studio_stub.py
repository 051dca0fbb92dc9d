"""A local stand-in for the part of Label Studio's REST API the adapter uses.

A threaded HTTP server on 127.0.0.1 (port 0) that answers as Label Studio
1.23 does, as seen against the real server:

- every ``/api/`` request needs ``Authorization: Token <TOKEN>`` (a legacy
  token) or ``Bearer <access>`` after ``POST /api/token/refresh`` with the
  personal access token :data:`PERSONAL_TOKEN`; otherwise 401;
- errors are Label Studio's documents ``{id, status_code, version, detail,
  exc_info}``, with ``validation_errors`` (field -> messages) on a 400;
- ``POST /api/projects/`` checks the title (3 to 50 characters) and that the
  label config parses as XML; ``GET /api/projects/?title=&page=&page_size=``
  pages ``{count, next, previous, results}``; ``DELETE /api/projects/{id}/`` is
  204 or 404;
- ``POST /api/projects/{id}/import[?return_task_ids=true]`` takes a list of
  ``{"data": …}`` tasks;
- ``GET /api/tasks/?project=&page=&page_size=&fields=all`` pages tasks
  ``{tasks, total, total_annotations, total_predictions}``, 404 "Invalid
  page." past the last page; annotations only with ``fields=all``;
- ``POST /api/tasks/{id}/annotations/`` stores an annotation by user
  :data:`USER_ID` (it does not check labels against the config, as Label
  Studio does not);
- ``GET /api/projects/{id}/export?exportType=JSON`` lists annotated tasks;
- ``POST /api/webhooks/`` registers a webhook (stored, never called).

Faults are injected per request with :meth:`LabelStudioStub.fail_next`
(a status, a non-JSON body, or a delay), and every request is in ``calls``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "stub-legacy-token-0123456789"
PERSONAL_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
USER_ID = 7
VERSION = "1.23.2-stub"

Answer = tuple[int, Any]


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    authorization: str | None


@dataclass
class Fault:
    """A canned answer for the next API request: ``status`` with Label Studio's error
    document (or ``html`` instead), or a ``delay_s`` before doing the real work."""

    status: int = 500
    detail: str = "Server error"
    html: bool = False
    delay_s: float = 0.0


@dataclass
class LabelStudioStub:
    url: str = ""
    projects: dict[int, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    webhooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    access_tokens: set[str] = field(default_factory=set)
    # Who submits the next annotations (the token's user in Label Studio).
    user_id: int = USER_ID
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: dict[str, int] = field(default_factory=dict)

    def fail_next(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def next_id(self, kind: str) -> int:
        self._ids[kind] = self._ids.get(kind, 0) + 1
        return self._ids[kind]

    def calls_to(self, method: str, prefix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(prefix)]


def error_document(status: int, detail: str, **validation: list[str]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "status_code": status,
        "version": VERSION,
        "detail": detail,
        "exc_info": None,
    }
    if validation:
        document["detail"] = "Validation error"
        document["validation_errors"] = validation
    return document


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        stub = self.server.stub
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with stub.lock:
            fault = stub.faults.pop(0) if stub.faults else None
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        elif fault is not None:
            self._record(method, split.path, query, body, fault.status)
            if fault.html:
                self._send(fault.status, None, html="<!doctype html><h1>Server Error</h1>")
            else:
                self._send(fault.status, error_document(fault.status, fault.detail))
            return
        with stub.lock:
            status, document = self._answer(method, split.path, query, body)
        self._record(method, split.path, query, body, status)
        self._send(status, document)

    def _record(self, method: str, path: str, query: Any, body: Any, status: int) -> None:
        call = Call(method, path, query, body, status, self.headers.get("Authorization"))
        with self.server.stub.lock:
            self.server.stub.calls.append(call)

    def _send(self, status: int, document: Any, *, html: str | None = None) -> None:
        payload = html.encode() if html is not None else b""
        if html is None and document is not None:
            payload = json.dumps(document).encode()
        try:
            self.send_response(status)
            if payload:
                kind = "text/html; charset=utf-8" if html is not None else "application/json"
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a delay fault)

    def _answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        if not path.startswith("/api/"):
            return 404, None
        if (method, path) == ("POST", "/api/token/refresh"):
            return self._refresh(body)
        authorization = self.headers.get("Authorization") or ""
        if not authorization:
            return 401, error_document(401, "Authentication credentials were not provided.")
        scheme, _, credential = authorization.partition(" ")
        stub = self.server.stub
        if not (
            (scheme == "Token" and credential == TOKEN)
            or (scheme == "Bearer" and credential in stub.access_tokens)
        ):
            return 401, error_document(401, "Invalid token.")
        parts = [part for part in path.split("/") if part][1:]  # without "api"
        return self._route(method, parts, query, body)

    def _refresh(self, body: Any) -> Answer:
        if not isinstance(body, dict) or body.get("refresh") != PERSONAL_TOKEN:
            return 401, {"detail": "Token is invalid", "code": "token_not_valid"}
        access = uuid.uuid4().hex
        self.server.stub.access_tokens.add(access)
        return 200, {"access": access}

    def _route(  # noqa: PLR0911 - one answer per route
        self, method: str, parts: list[str], query: dict[str, list[str]], body: Any
    ) -> Answer:
        stub = self.server.stub
        match method, parts:
            case "POST", ["projects"]:
                return self._create_project(body)
            case "GET", ["projects"]:
                return self._projects(query)
            case "DELETE", ["projects", project_id] if project_id.isdigit():
                if stub.projects.pop(int(project_id), None) is None:
                    return 404, error_document(404, "No Project matches the given query.")
                for task_id in [
                    i for i, t in stub.tasks.items() if t["project"] == int(project_id)
                ]:
                    del stub.tasks[task_id]
                return 204, None
            case "POST", ["projects", project_id, "import"] if project_id.isdigit():
                return self._import(int(project_id), query, body)
            case "GET", ["projects", project_id, "export"] if project_id.isdigit():
                return self._export(int(project_id))
            case "GET", ["tasks"]:
                return self._tasks(query)
            case "POST", ["tasks", task_id, "annotations"] if task_id.isdigit():
                return self._annotate(int(task_id), body)
            case "POST", ["webhooks"]:
                webhook_id = stub.next_id("webhook")
                stub.webhooks[webhook_id] = {"id": webhook_id, **(body or {})}
                return 201, stub.webhooks[webhook_id]
        return 404, error_document(404, "Not found.")

    def _create_project(self, body: Any) -> Answer:
        stub = self.server.stub
        if not isinstance(body, dict):
            return 400, error_document(400, "", non_field_errors=["Invalid data."])
        title = body.get("title") or ""
        if not 3 <= len(title) <= 50:
            return 400, error_document(
                400, "", title=["Ensure this field has between 3 and 50 characters."]
            )
        try:
            ET.fromstring(body.get("label_config") or "")  # noqa: S314 - a test's own XML
        except ET.ParseError as error:
            return 400, error_document(400, "", label_config=[str(error)])
        project_id = stub.next_id("project")
        stub.projects[project_id] = {
            "id": project_id,
            "title": title,
            "description": body.get("description", ""),
            "label_config": body["label_config"],
            "maximum_annotations": body.get("maximum_annotations", 1),
            "overlap_cohort_percentage": body.get("overlap_cohort_percentage", 100),
        }
        return 201, stub.projects[project_id]

    def _projects(self, query: dict[str, list[str]]) -> Answer:
        """Label Studio's paged project list; ``title`` matches case-insensitively inside."""
        title = query.get("title", [""])[0].lower()
        page = int(query.get("page", ["1"])[0])
        size = int(query.get("page_size", ["30"])[0])
        found = [p for p in self.server.stub.projects.values() if title in p["title"].lower()]
        chosen = found[(page - 1) * size : page * size]
        if page < 1 or (page > 1 and not chosen):
            return 404, error_document(404, "Invalid page.")
        more = page * size < len(found)
        return 200, {
            "count": len(found),
            "next": f"{self.server.stub.url}/api/projects/?page={page + 1}" if more else None,
            "previous": None,
            "results": chosen,
        }

    def _project_or_404(self, project_id: int) -> Answer | None:
        if project_id not in self.server.stub.projects:
            return 404, error_document(404, "No Project matches the given query.")
        return None

    def _import(self, project_id: int, query: dict[str, list[str]], body: Any) -> Answer:
        stub = self.server.stub
        if (missing := self._project_or_404(project_id)) is not None:
            return missing
        tasks = body if isinstance(body, list) else [body]
        if not all(isinstance(task, dict) and isinstance(task.get("data"), dict) for task in tasks):
            return 400, error_document(400, "", tasks=["Each task needs a data object."])
        ids = []
        for task in tasks:
            task_id = stub.next_id("task")
            stub.tasks[task_id] = {
                "id": task_id,
                "project": project_id,
                "data": task["data"],
                "annotations": [],
                "predictions": [],
            }
            ids.append(task_id)
        answer: dict[str, Any] = {"task_count": len(ids), "annotation_count": 0, "duration": 0.01}
        if query.get("return_task_ids") == ["true"]:
            answer["task_ids"] = ids
        return 201, answer

    def _tasks(self, query: dict[str, list[str]]) -> Answer:
        stub = self.server.stub
        project_id = int(query.get("project", ["0"])[0])
        if (missing := self._project_or_404(project_id)) is not None:
            return missing
        page = int(query.get("page", ["1"])[0])
        size = int(query.get("page_size", ["100"])[0])
        tasks = [t for t in stub.tasks.values() if t["project"] == project_id]
        chosen = tasks[(page - 1) * size : page * size]
        if page < 1 or (page > 1 and not chosen):
            return 404, error_document(404, "Invalid page.")
        full = query.get("fields") == ["all"]
        shown = [
            {k: v for k, v in task.items() if full or k not in {"annotations", "predictions"}}
            for task in chosen
        ]
        return 200, {
            "total_annotations": sum(len(t["annotations"]) for t in tasks),
            "total_predictions": 0,
            "total": len(tasks),
            "tasks": shown,
        }

    def _annotate(self, task_id: int, body: Any) -> Answer:
        stub = self.server.stub
        task = stub.tasks.get(task_id)
        if task is None:
            return 404, error_document(404, "No Task matches the given query.")
        if not isinstance(body, dict) or not isinstance(body.get("result"), list):
            return 400, error_document(400, "", result=["This field is required."])
        now = _now()
        annotation = {
            "id": stub.next_id("annotation"),
            "result": body["result"],
            "completed_by": stub.user_id,
            "was_cancelled": bool(body.get("was_cancelled", False)),
            "ground_truth": False,
            "created_at": now,
            "updated_at": now,
            "lead_time": body.get("lead_time"),
            "task": task_id,
            "project": task["project"],
        }
        task["annotations"].append(annotation)
        return 201, annotation

    def _export(self, project_id: int) -> Answer:
        stub = self.server.stub
        if (missing := self._project_or_404(project_id)) is not None:
            return missing
        annotated = [
            {
                "id": task["id"],
                "annotations": task["annotations"],
                "data": task["data"],
                "project": project_id,
            }
            for task in stub.tasks.values()
            if task["project"] == project_id
            and any(not a["was_cancelled"] for a in task["annotations"])
        ]
        return 200, annotated


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: LabelStudioStub


@contextmanager
def running_label_studio_stub() -> Iterator[LabelStudioStub]:
    server = _Server(("127.0.0.1", 0), _Handler)
    stub = LabelStudioStub(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.stub = stub
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
