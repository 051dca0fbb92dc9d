"""A typed client for Label Studio's REST API (Community and Enterprise).

What the labelling service needs of a Label Studio server: create a project
whose labelling interface is generated from the order's schema
(:func:`~credits.labelling.label_studio_format.label_config`), import one task
per item (``data.credits_item`` carries our reference), read the completed
annotations page by page or through the project export, register the webhook
that tells us of new annotations, and delete a project.

Authentication: ``CREDITS_LABEL_STUDIO_TOKEN`` is either a legacy token (sent
as ``Authorization: Token …``; the organisation must allow legacy tokens) or a
personal access token, a JWT refresh token, which is exchanged at
``/api/token/refresh`` for a short-lived access token sent as ``Bearer`` and
refreshed once when Label Studio answers 401.

Every request has explicit connect and read timeouts. Nothing raises a raw
``requests`` error: no answer, a timeout or a 5xx is
:class:`LabelStudioUnavailable`; a 4xx is :class:`LabelStudioRefused` with
Label Studio's own ``detail`` and ``validation_errors`` in the message; an
answer that is not the JSON documented is :class:`LabelStudioUnavailable` too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from credits.labelling.label_schema import LabelSchema
from credits.labelling.label_studio_errors import (
    LabelStudioError,
    LabelStudioRefused,
    LabelStudioUnavailable,
    error_message,
    json_body,
)
from credits.labelling.label_studio_format import (
    ITEM_REF_FIELD,
    WEBHOOK_ACTIONS,
    WEBHOOK_SECRET_HEADER,
    ExternalAnnotation,
    label_config,
    parse_annotation,
    task_data,
)
from credits.settings import Settings

PROJECT_TITLE_MAX = 50  # Label Studio refuses longer titles (and shorter than 3)
TASK_PAGE_SIZE = 100
IMPORT_BATCH = 500
CONNECT_TIMEOUT_S = 5.0

__all__ = [
    "ImportedTasks",
    "LabelStudioClient",
    "LabelStudioError",
    "LabelStudioProject",
    "LabelStudioRefused",
    "LabelStudioUnavailable",
    "NewTask",
    "label_studio_client_from_settings",
]


@dataclass(frozen=True)
class LabelStudioProject:
    id: int
    title: str
    # How many annotations each task takes before Label Studio counts it done.
    annotations_per_task: int = 1


@dataclass(frozen=True)
class ImportedTasks:
    """How many tasks an import created; their ids where Label Studio says (the
    Community edition imports at once; Enterprise imports in the background)."""

    count: int
    task_ids: list[int] | None


@dataclass(frozen=True)
class NewTask:
    """One item to import: our reference, and its text or image URL."""

    item_ref: str
    content: str


class LabelStudioClient:
    """Label Studio's REST API at ``url``, authenticated with ``token``."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        http: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
        self.http = http or requests.Session()
        self._token = token
        self._personal = _is_jwt(token)
        self._access: str | None = None

    # -- projects ----------------------------------------------------------------------

    def create_project(
        self, *, title: str, description: str, schema: LabelSchema, annotations_per_task: int = 1
    ) -> LabelStudioProject:
        """A new project whose labelling interface is the schema's, each of whose tasks is
        given to ``annotations_per_task`` annotators (the order's redundancy): Label
        Studio otherwise counts a task done at its first annotation and shows it to
        no one else, and an order of redundancy 2 would never be delivered."""
        body = {
            "title": title[:PROJECT_TITLE_MAX],
            "description": description,
            "label_config": label_config(schema),
            "maximum_annotations": annotations_per_task,
            # Every task, not a sample of them, gets that many.
            "overlap_cohort_percentage": 100,
        }
        answer = self._json("POST", "/api/projects/", body, doing="create a project")
        return LabelStudioProject(
            id=_id(answer, "project"),
            title=str(answer.get("title", "")),
            annotations_per_task=int(answer.get("maximum_annotations", annotations_per_task)),
        )

    def find_project(self, title: str) -> LabelStudioProject | None:
        """The oldest project titled exactly ``title`` (as cut to the length Label Studio
        keeps), or None: how a creation whose answer was lost is found again."""
        wanted = title[:PROJECT_TITLE_MAX]
        page = 1
        while True:
            answer = self._json(
                "GET",
                "/api/projects/",
                None,
                params={"title": wanted, "page": page, "page_size": TASK_PAGE_SIZE},
                doing="list projects",
            )
            results = answer.get("results")
            if not isinstance(results, list):
                raise LabelStudioUnavailable("Label Studio's project list has no results")
            found = sorted(
                p["id"]
                for p in results
                if isinstance(p, dict) and p.get("title") == wanted and isinstance(p.get("id"), int)
            )
            if found:
                return LabelStudioProject(id=found[0], title=wanted)
            if not answer.get("next"):
                return None
            page += 1

    def delete_project(self, project_id: int) -> None:
        """Deletes the project with its tasks and annotations; an unknown one is fine."""
        self._send("DELETE", f"/api/projects/{project_id}/", doing="delete a project", gone_ok=True)

    # -- tasks -------------------------------------------------------------------------

    def import_tasks(
        self, project_id: int, schema: LabelSchema, tasks: Sequence[NewTask]
    ) -> ImportedTasks:
        """Imports one task per item, in batches; ids in order where Label Studio says."""
        count, ids = 0, []
        known = True
        for start in range(0, len(tasks), IMPORT_BATCH):
            batch = [{"data": _data(schema, task)} for task in tasks[start : start + IMPORT_BATCH]]
            answer = self._json(
                "POST",
                f"/api/projects/{project_id}/import?return_task_ids=true",
                batch,
                doing="import tasks",
            )
            count += int(answer.get("task_count", len(batch)))
            task_ids = answer.get("task_ids")
            if isinstance(task_ids, list) and all(isinstance(i, int) for i in task_ids):
                ids.extend(task_ids)
            else:
                known = False
        return ImportedTasks(count=count, task_ids=ids if known else None)

    def tasks(
        self, project_id: int, *, page_size: int = TASK_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Every task of the project with its annotations, page by page."""
        page, seen = 1, 0
        while True:
            answer = self._json(
                "GET",
                "/api/tasks/",
                None,
                params={
                    "project": project_id,
                    "page": page,
                    "page_size": page_size,
                    "fields": "all",
                    "resolve_uri": "false",
                },
                doing="list tasks",
            )
            batch = answer.get("tasks")
            total = answer.get("total")
            if not isinstance(batch, list) or not isinstance(total, int):
                raise LabelStudioUnavailable("Label Studio's task list has no tasks and total")
            yield from (task for task in batch if isinstance(task, dict))
            seen += len(batch)
            if not batch or seen >= total:
                return
            page += 1

    def task_ids_by_item(self, project_id: int) -> dict[str, int]:
        """Our item references and the ids of their tasks (an import that did not say)."""
        found: dict[str, int] = {}
        for task in self.tasks(project_id):
            data = task.get("data")
            ref = data.get(ITEM_REF_FIELD) if isinstance(data, Mapping) else None
            if isinstance(ref, str) and isinstance(task.get("id"), int):
                found.setdefault(ref, task["id"])
        return found

    # -- annotations -------------------------------------------------------------------

    def completed_annotations(
        self, project_id: int, schema: LabelSchema
    ) -> Iterator[ExternalAnnotation]:
        """Every submitted (not skipped) annotation of the project, checked against the
        schema; one that does not fit raises InvalidInput naming it."""
        for task in self.tasks(project_id):
            for annotation in _annotations(task):
                yield parse_annotation(schema, annotation, task)

    def export(self, project_id: int, schema: LabelSchema) -> list[ExternalAnnotation]:
        """The project's JSON export (annotated tasks only), parsed."""
        answer = self._send(
            "GET",
            f"/api/projects/{project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "false"},
            doing="export the project",
            read_timeout_factor=4,
        )
        tasks = json_body(answer, "export the project")
        if not isinstance(tasks, list):
            raise LabelStudioUnavailable("Label Studio's export is not a list of tasks")
        return [
            parse_annotation(schema, annotation, task)
            for task in tasks
            if isinstance(task, dict)
            for annotation in _annotations(task)
        ]

    def create_annotation(
        self, task_id: int, result: list[dict[str, Any]], *, lead_time_s: float | None = None
    ) -> int:
        """Submits an annotation as the token's user (what an annotator's click does)."""
        body: dict[str, Any] = {"result": result}
        if lead_time_s is not None:
            body["lead_time"] = lead_time_s
        answer = self._json(
            "POST", f"/api/tasks/{task_id}/annotations/", body, doing="create an annotation"
        )
        return _id(answer, "annotation")

    # -- webhooks ----------------------------------------------------------------------

    def create_webhook(self, project_id: int, *, url: str, secret: str) -> int:
        """Has Label Studio POST new and updated annotations of the project to ``url``
        with the shared secret in the :data:`WEBHOOK_SECRET_HEADER` header."""
        body = {
            "project": project_id,
            "url": url,
            "send_payload": True,
            "send_for_all_actions": False,
            "actions": list(WEBHOOK_ACTIONS),
            "headers": {WEBHOOK_SECRET_HEADER: secret},
            "is_active": True,
        }
        return _id(self._json("POST", "/api/webhooks/", body, doing="create a webhook"), "webhook")

    # -- transport ---------------------------------------------------------------------

    def _json(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        doing: str,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        answer = json_body(self._send(method, path, body, params=params, doing=doing), doing)
        if not isinstance(answer, dict):
            raise LabelStudioUnavailable(f"Label Studio's answer to {doing} is not a JSON object")
        return answer

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        doing: str,
        params: Mapping[str, Any] | None = None,
        gone_ok: bool = False,
        read_timeout_factor: int = 1,
    ) -> requests.Response:
        response = self._request(
            method, path, body, params=params, doing=doing, read_timeout_factor=read_timeout_factor
        )
        if response.status_code == 401 and self._personal:
            self._access = None  # the access token expired: one more try with a new one
            response = self._request(
                method,
                path,
                body,
                params=params,
                doing=doing,
                read_timeout_factor=read_timeout_factor,
            )
        if gone_ok and response.status_code == 404:
            return response
        if response.status_code >= 500:
            raise LabelStudioUnavailable(
                f"Label Studio failed to {doing}: HTTP {response.status_code}"
                f"{error_message(response, prefix=': ')}",
                label_studio_status=response.status_code,
            )
        if response.status_code >= 400:
            raise LabelStudioRefused(
                f"Label Studio refused to {doing}: HTTP {response.status_code}"
                f"{error_message(response, prefix=': ')}",
                label_studio_status=response.status_code,
            )
        return response

    def _request(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        params: Mapping[str, Any] | None,
        doing: str,
        read_timeout_factor: int,
    ) -> requests.Response:
        connect, read = self.timeout
        try:
            return self.http.request(
                method,
                self.url + path,
                json=body,
                params=params,
                headers={"Authorization": self._authorization(doing), "Accept": "application/json"},
                timeout=(connect, read * read_timeout_factor),
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise LabelStudioUnavailable(
                f"Label Studio at {self.url} did not answer to {doing}: {type(error).__name__}"
            ) from None

    def _authorization(self, doing: str) -> str:
        if not self._personal:
            return f"Token {self._token}"
        if self._access is None:
            self._access = self._refreshed_access(doing)
        return f"Bearer {self._access}"

    def _refreshed_access(self, doing: str) -> str:
        connect, read = self.timeout
        try:
            response = self.http.post(
                f"{self.url}/api/token/refresh",
                json={"refresh": self._token},
                timeout=(connect, read),
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise LabelStudioUnavailable(
                f"Label Studio at {self.url} did not answer to {doing}: {type(error).__name__}"
            ) from None
        if response.status_code >= 400:
            error_class = (
                LabelStudioUnavailable if response.status_code >= 500 else LabelStudioRefused
            )
            raise error_class(
                f"Label Studio refused the personal access token: HTTP {response.status_code}"
                f"{error_message(response, prefix=': ')}",
                label_studio_status=response.status_code,
            )
        access = json_body(response, "refresh the access token")
        if not isinstance(access, dict) or not isinstance(access.get("access"), str):
            raise LabelStudioUnavailable("Label Studio's token refresh has no access token")
        return str(access["access"])


def label_studio_client_from_settings(settings: Settings) -> LabelStudioClient | None:
    """The configured client, or None when ``CREDITS_LABEL_STUDIO_URL`` is unset."""
    if not settings.label_studio_url:
        return None
    return LabelStudioClient(
        settings.label_studio_url,
        settings.label_studio_token.get_secret_value(),
        timeout_s=settings.label_studio_timeout_s,
    )


def _data(schema: LabelSchema, task: NewTask) -> dict[str, str]:
    return task_data(schema, item_ref=task.item_ref, content=task.content)


def _annotations(task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    annotations = task.get("annotations")
    if not isinstance(annotations, list):
        return []
    return [a for a in annotations if isinstance(a, Mapping) and not a.get("was_cancelled")]


def _is_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


def _id(answer: Mapping[str, Any], what: str) -> int:
    value = answer.get("id")
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabelStudioUnavailable(f"Label Studio's new {what} has no id")
    return value
