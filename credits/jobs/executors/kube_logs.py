"""The log of a job on Kubernetes: its latest attempt's rank 0 pod's, from the API.

The tail asks the API for a number of lines and at most ``MAX_TAIL_BYTES``; the
whole log is streamed in chunks, never read into memory. Split from
:mod:`credits.jobs.executors.kubernetes`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from credits.jobs.executors.base import ExecutorError
from credits.jobs.executors.kube_calls import NotFound
from credits.jobs.executors.kube_jobs import KubeJobs
from credits.jobs.logtail import (
    CHUNK_BYTES,
    MAX_TAIL_BYTES,
    drop_split_character,
    tail_bytes,
)
from credits.jobs.manifests import ATTEMPT_LABEL, INDEX_ANNOTATION

Obj = dict[str, Any]
API_LIMIT_MARKER = (
    f"[… the pod log API stops at {MAX_TAIL_BYTES:,} bytes; download the whole log …]"
)


class KubeLogs:
    """Reads the logs of one namespace's job pods."""

    def __init__(self, objects: KubeJobs, core: Any, namespace: str) -> None:
        self._objects = objects
        self._core = core
        self._ns = namespace

    def tail(self, job_id: int, tail_lines: int) -> str:
        """The last lines of the rank 0 pod's log of the latest attempt ('' before it
        starts). The API is asked for ``tail_lines`` lines and at most
        ``MAX_TAIL_BYTES``: past that the kubelet stops at the byte limit (it counts
        from the first of those lines), and a marker says so at the end. Long lines
        are cut as ``logtail`` cuts them."""
        if tail_lines <= 0:
            return ""
        pod_name = self._log_pod(job_id)
        if pod_name is None:
            return ""
        try:
            response = self._open_log(pod_name, tail_lines=tail_lines, limit_bytes=MAX_TAIL_BYTES)
        except ExecutorError:
            return ""  # the API still failing after retries: no tail this time
        if response is None:
            return ""
        try:
            data = bytes(response.data)
        finally:
            response.release_conn()
        if len(data) < MAX_TAIL_BYTES:
            return tail_bytes(data, tail_lines)
        text = tail_bytes(drop_split_character(data), tail_lines)
        return text.removesuffix("\n") + API_LIMIT_MARKER + "\n"

    def stream(self, job_id: int) -> Iterator[bytes]:
        """The rank 0 pod's whole log of the latest attempt, streamed from the API in
        chunks (empty before it starts). The pod is found and its log opened here, so
        an API still failing after retries raises ExecutorError before any chunk."""
        pod_name = self._log_pod(job_id)
        response = None if pod_name is None else self._open_log(pod_name)
        if response is None:
            return iter(())
        return _stream_body(response)

    def _log_pod(self, job_id: int) -> str | None:
        """The name of the latest attempt's rank 0 pod, whose log is the job's; None
        when the job has no Job or no pod yet."""
        jobs = self._objects.list_jobs(job_id)
        if not jobs:
            return None
        latest = max(jobs, key=lambda obj: int(obj["metadata"]["labels"][ATTEMPT_LABEL]))
        pods = sorted(self._objects.pods_of(latest), key=_rank)
        return str(pods[0]["metadata"]["name"]) if pods else None

    def _open_log(self, pod_name: str, **limits: int) -> Any:
        """The pod's log as an unread HTTP response (urllib3), or None when the pod is
        gone or has no log yet (a pod still starting answers 400). A transient failure
        that outlasts the retries raises ExecutorError."""
        try:
            return self._objects.call(
                f"reading the log of {pod_name}",
                self._core.read_namespaced_pod_log,
                pod_name,
                self._ns,
                _preload_content=False,
                **limits,
            )
        except NotFound:
            return None
        except ExecutorError as error:
            if error.transient:
                raise
            return None


def _stream_body(response: Any) -> Iterator[bytes]:
    """The body of an unread urllib3 response in chunks; its connection goes back to
    the pool when the body ends or the iterator is closed."""
    try:
        yield from response.stream(CHUNK_BYTES, decode_content=True)
    finally:
        response.release_conn()


def _rank(pod: Obj) -> tuple[int, str]:
    annotations = pod["metadata"].get("annotations") or {}
    index = annotations.get(INDEX_ANNOTATION, "0")
    return (int(index) if str(index).isdigit() else 0, pod["metadata"]["name"])
