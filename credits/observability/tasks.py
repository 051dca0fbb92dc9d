"""Carrying the request id into Celery tasks.

A task sent while a request id is bound gets it in a message header; the worker
binds it for the task's run, so the task's log lines and the job events it
records carry it. An eager task runs in the sender's context and sees the id
already.
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.signals import before_task_publish, task_postrun, task_prerun

from credits.observability.request_ids import (
    accepted_request_id,
    bind_request_id,
    current_request_id,
    reset_request_id,
)

TASK_HEADER = "credits_request_id"
_TOKEN_ATTRIBUTE = "_credits_request_id_token"  # noqa: S105 - an attribute name


def add_request_id_header(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = current_request_id()
    if headers is not None and request_id is not None:
        headers[TASK_HEADER] = request_id


def bind_task_request_id(task: Task[Any, Any] | None = None, **_: Any) -> None:
    """Binds the header's id (checked like an incoming one) for the task's run; a task
    sent with none keeps the id of the context it runs in (an eager task's request)."""
    if task is None:
        return
    sent = task.request.get(TASK_HEADER)
    if sent is None:
        return
    token = bind_request_id(accepted_request_id(str(sent)))
    setattr(task.request, _TOKEN_ATTRIBUTE, token)


def unbind_task_request_id(task: Task[Any, Any] | None = None, **_: Any) -> None:
    if task is None:
        return
    token = getattr(task.request, _TOKEN_ATTRIBUTE, None)
    if token is not None:
        reset_request_id(token)
        setattr(task.request, _TOKEN_ATTRIBUTE, None)


def connect_task_signals() -> None:
    """Connects the handlers once per process (Celery's signals are process-wide)."""
    before_task_publish.connect(add_request_id_header, weak=False, dispatch_uid=TASK_HEADER)
    task_prerun.connect(bind_task_request_id, weak=False, dispatch_uid=TASK_HEADER)
    task_postrun.connect(unbind_task_request_id, weak=False, dispatch_uid=TASK_HEADER)
