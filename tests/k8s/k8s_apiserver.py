"""The API semantics behind the HTTP routes: validation, the verbs, watch streams, logs.

Transport-free: ``k8s_server`` turns requests into calls here and results into responses.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from k8s_faults import WatchFault
from k8s_patch import apply_patch
from k8s_selectors import Matcher, selector_matcher
from k8s_store import (
    KINDS,
    ApiError,
    Change,
    Obj,
    ResourceKind,
    Store,
    bad_request,
    conflict,
    gone,
    invalid,
)

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# A Service's name is a DNS-1035 label (it becomes a DNS name): it starts with a letter.
_DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# A label key's name part; its prefix, if any, is a DNS-1123 subdomain (_NAME_RE).
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
JOB_NAME_MAX = 63


@dataclass(frozen=True)
class Route:
    kind: ResourceKind
    namespace: str | None  # None: all namespaces (lists) or cluster scoped
    name: str | None
    sub: str | None  # "status", "log"

    @property
    def resource(self) -> str:
        return f"{self.kind.plural}/{self.sub}" if self.sub else self.kind.plural

    @property
    def ns(self) -> str:
        return self.namespace or ""


def _validate_containers(containers: Any, path: str, causes: list[tuple[str, str]]) -> None:
    if not isinstance(containers, list) or not containers:
        causes.append((path, "Required value"))
        return
    for i, container in enumerate(containers):
        if not isinstance(container, dict) or not container.get("name"):
            causes.append((f"{path}[{i}].name", "Required value"))
        elif not container.get("image"):
            causes.append((f"{path}[{i}].image", "Required value"))


def _validate_job(spec: Any, causes: list[tuple[str, str]]) -> None:
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    _validate_containers(pod_spec.get("containers"), "spec.template.spec.containers", causes)
    if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
        causes.append(
            ("spec.template.spec.restartPolicy", 'Unsupported value: "Never", "OnFailure"')
        )
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        causes.append(("spec.completions", "Required value: when completion mode is Indexed"))
    for fld in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"):
        value = spec.get(fld)
        if value is not None and (not isinstance(value, int) or value < 0):
            causes.append((f"spec.{fld}", f"Invalid value: {value!r}"))


def _valid_label_key(key: Any) -> bool:
    """As apimachinery's IsQualifiedName: an optional DNS-1123 subdomain prefix of at
    most 253 characters and '/', then a name of at most 63."""
    if not isinstance(key, str):
        return False
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= 253 and _NAME_RE.fullmatch(prefix)):
        return False
    return len(name) <= 63 and bool(_LABEL_NAME_RE.fullmatch(name))


def _validate_name(kind: ResourceKind, name: str, causes: list[tuple[str, str]]) -> None:
    if kind.plural == "services":
        if not _DNS1035_RE.match(name) or len(name) > 63:
            causes.append(
                (
                    "metadata.name",
                    f"Invalid value: {name!r}: a DNS-1035 label must start with a letter",
                )
            )
        return
    limit = JOB_NAME_MAX if kind.plural == "jobs" else 253
    if not _NAME_RE.match(name) or len(name) > limit:
        causes.append(("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 name"))


def validate(kind: ResourceKind, obj: Any) -> None:
    """422 Invalid for obviously invalid bodies."""
    if not isinstance(obj, dict):
        raise bad_request("the body of the request is not a JSON object")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise invalid(kind, "", [("metadata", "Required value")])
    name = meta.get("name") or ""
    causes: list[tuple[str, str]] = []
    if not name and not meta.get("generateName"):
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    if name:
        _validate_name(kind, name, causes)
    for key, value in (meta.get("labels") or {}).items():
        if not _valid_label_key(key):
            causes.append((f"metadata.labels[{key}]", "Invalid value: not a qualified name"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE_RE.match(value):
            causes.append((f"metadata.labels[{key}]", f"Invalid value: {value!r}"))
    spec = obj.get("spec") or {}
    if kind.plural == "pods":
        _validate_containers(spec.get("containers"), "spec.containers", causes)
    elif kind.plural == "jobs":
        _validate_job(spec, causes)
    if causes:
        raise invalid(kind, name or meta.get("generateName", ""), causes)


def _initial_status(kind: ResourceKind, obj: Obj) -> None:
    if kind.plural == "pods":
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif kind.plural == "jobs":
        obj["status"] = {}
    elif kind.plural == "namespaces":
        obj["status"] = {"phase": "Active"}


def _encode_continue(rv: int, after: tuple[str, str]) -> str:
    raw = json.dumps({"rv": rv, "ns": after[0], "name": after[1]}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["ns"]), str(data["name"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise bad_request(f"invalid continue token: {token!r}") from exc


@dataclass
class ApiServer:
    """The verbs, against one store. ``on_write`` runs after every successful write."""

    store: Store
    on_write: Callable[[], None]
    on_delete: Callable[[Route], None]
    # A pod's deletion with a grace (None: the pod's own): the pod being terminated, or
    # None when it goes at once (not running, or no grace).
    on_pod_delete: Callable[[Route, int | None], Obj | None] | None = None
    bookmark_interval_s: float = 1.0
    poll_s: float = 0.05
    default_watch_timeout_s: float = 1800.0
    stopping: bool = False

    # -- reads -------------------------------------------------------------------------

    def get(self, route: Route) -> Obj:
        assert route.name is not None
        return self.store.get(route.kind.plural, route.ns, route.name)

    def list_objects(self, route: Route, params: Mapping[str, str]) -> Obj:
        kind = route.kind
        match = selector_matcher(kind, params.get("labelSelector"), params.get("fieldSelector"))
        limit = int(params.get("limit") or 0)
        token = params.get("continue")
        with self.store.lock:
            list_rv, after = self.store.rv, ("", "")
            if token:
                list_rv, after = _decode_continue(token)
                if list_rv < self.store.floor:
                    raise gone(
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter."
                    )
            namespace = route.namespace if kind.namespaced else None
            matching = [
                o
                for o in self.store.items(kind.plural, namespace)
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after or not token
            ]
            matching = [o for o in matching if match(o)]
            page = matching[:limit] if limit > 0 else matching
            items = [copy.deepcopy(o) for o in page]
        meta: Obj = {"resourceVersion": str(list_rv)}
        if limit > 0 and len(matching) > limit:
            last = page[-1]["metadata"]
            meta["continue"] = _encode_continue(list_rv, (last.get("namespace", ""), last["name"]))
            meta["remainingItemCount"] = len(matching) - limit
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {
            "kind": f"{kind.kind}List",
            "apiVersion": kind.api_version,
            "metadata": meta,
            "items": items,
        }

    # -- writes ------------------------------------------------------------------------

    def create(self, route: Route, body: Any) -> Obj:
        kind = route.kind
        validate(kind, body)
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        if kind.namespaced:
            if meta.get("namespace") and meta["namespace"] != route.ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = route.ns
        else:
            meta.pop("namespace", None)
        meta.pop("resourceVersion", None)
        _initial_status(kind, obj)
        created = self.store.create(kind.plural, obj)
        self.on_write()
        return created

    def _write(self, route: Route, current: Obj, new: Obj) -> Obj:
        """Store ``new`` in place of ``current``: the main resource keeps the current status,
        the status subresource keeps everything but the status."""
        kind = route.kind
        if route.sub == "status":
            result = copy.deepcopy(current)
            result["status"] = new.get("status") or {}
            rv = (new.get("metadata") or {}).get("resourceVersion")
            result["metadata"]["resourceVersion"] = rv
        else:
            validate(kind, new)
            result = copy.deepcopy(new)
            if "status" in current:
                result["status"] = copy.deepcopy(current["status"])
            result["metadata"]["name"] = route.name
            if kind.namespaced:
                result["metadata"]["namespace"] = route.ns
        updated = self.store.update(kind.plural, result)
        self.on_write()
        return updated

    def replace(self, route: Route, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON object")
        meta = body.get("metadata") or {}
        if meta.get("name") and meta["name"] != route.name:
            raise bad_request("the name of the object does not match the name on the URL")
        with self.store.lock:
            current = self.get(route)
            return self._write(route, current, body)

    def patch(self, route: Route, body: Any, content_type: str) -> Obj:
        with self.store.lock:
            current = self.get(route)
            patched = apply_patch(current, body, content_type)
            return self._write(route, current, patched)

    def delete(self, route: Route, params: Mapping[str, str], body: Any) -> Obj:
        assert route.name is not None
        options = body if isinstance(body, dict) else {}
        default = "Orphan" if route.kind.plural == "jobs" else "Background"
        policy = params.get("propagationPolicy") or options.get("propagationPolicy") or default
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        pre = options.get("preconditions") or {}
        with self.store.lock:
            current = self.get(route)
            if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
                raise conflict(route.kind, route.name)
            if route.kind.plural == "pods" and self.on_pod_delete is not None:
                terminating = self.on_pod_delete(route, _grace(params, options))
                if terminating is not None:
                    self.on_write()
                    return copy.deepcopy(terminating)
            if policy == "Foreground":
                self.on_delete(route)
            obj, removed = self.store.delete(
                route.kind.plural,
                route.ns,
                route.name,
                propagation=policy,
                precondition_rv=pre.get("resourceVersion"),
            )
        self.on_write()
        if not removed:
            return obj
        details: Obj = {"name": route.name, "kind": route.kind.plural}
        if route.kind.group:
            details["group"] = route.kind.group
        details["uid"] = obj["metadata"]["uid"]
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    # -- watch -------------------------------------------------------------------------

    def watch(
        self,
        route: Route,
        params: Mapping[str, str],
        fault: WatchFault | None,
        drop: Callable[[], None],
    ) -> Iterator[bytes]:
        """Everything up front (so a bad selector is an HTTP error); then a generator."""
        kind = route.kind
        match = selector_matcher(kind, params.get("labelSelector"), params.get("fieldSelector"))
        timeout = float(params.get("timeoutSeconds") or self.default_watch_timeout_s)
        bookmarks = params.get("allowWatchBookmarks", "").lower() in ("true", "1")
        rv_param = params.get("resourceVersion") or ""
        namespace = route.namespace if kind.namespaced else None
        with self.store.lock:
            if rv_param in ("", "0"):
                initial = [
                    {"type": "ADDED", "object": copy.deepcopy(o)}
                    for o in self.store.items(kind.plural, namespace)
                    if match(o)
                ]
                cursor = self.store.rv
            else:
                try:
                    cursor = int(rv_param)
                except ValueError as exc:
                    raise bad_request(f"invalid resource version {rv_param!r}") from exc
                try:
                    self.store.changes_since(kind.plural, cursor)
                except ApiError as err:
                    return iter([_line({"type": "ERROR", "object": err.status()})])
                initial = []
        return self._stream(
            kind, namespace, match, cursor, initial, timeout, bookmarks, fault, drop
        )

    def _stream(
        self,
        kind: ResourceKind,
        namespace: str | None,
        match: Matcher,
        cursor: int,
        pending: list[Obj],
        timeout: float,
        bookmarks: bool,
        fault: WatchFault | None,
        drop: Callable[[], None],
    ) -> Iterator[bytes]:
        # The real API server sends a watch's headers at once, before any event: an
        # empty chunk makes the server send them (and a client's request return) now.
        yield b""
        deadline = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        sent = 0
        drop_after = fault.drop_after if fault is not None else None
        while not self.stopping:
            events = pending
            if fault is not None and fault.reorder:
                for i in range(0, len(events) - 1, 2):
                    events[i], events[i + 1] = events[i + 1], events[i]
            for event in events:
                for _ in range(2 if fault is not None and fault.duplicate else 1):
                    if drop_after is not None and sent >= drop_after:
                        drop()
                        return
                    yield _line(event)
                    sent += 1
            if drop_after is not None and sent >= drop_after:
                drop()
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with self.store.lock:
                if self.store.rv <= cursor:
                    self.store.changed.wait(min(self.poll_s * 4, remaining))
                try:
                    changes = self.store.changes_since(kind.plural, cursor)
                except ApiError as err:
                    yield _line({"type": "ERROR", "object": err.status()})
                    return
                cursor = self.store.rv
            pending = [e for c in changes if (e := _event(c, namespace, match)) is not None]
            now = time.monotonic()
            if bookmarks and now - last_bookmark >= self.bookmark_interval_s:
                last_bookmark = now
                pending.append(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": kind.kind,
                            "apiVersion": kind.api_version,
                            "metadata": {"resourceVersion": str(cursor)},
                        },
                    }
                )

    # -- logs --------------------------------------------------------------------------

    def log(
        self, route: Route, params: Mapping[str, str], lines: Callable[[Obj], list[str]]
    ) -> bytes:
        pod = self.get(route)
        containers = [c.get("name") for c in pod["spec"].get("containers") or []]
        container = params.get("container") or (containers[0] if containers else "")
        if container not in containers:
            raise bad_request(
                f"container {container} is not valid for pod {pod['metadata']['name']}"
            )
        if pod.get("status", {}).get("phase") == "Pending":
            raise bad_request(
                f'container "{container}" in pod "{pod["metadata"]["name"]}" is waiting to '
                "start: ContainerCreating"
            )
        text_lines = lines(pod)
        tail = params.get("tailLines")
        if tail is not None and tail != "":
            count = int(tail)
            text_lines = text_lines[-count:] if count > 0 else []
        data = "".join(line + "\n" for line in text_lines).encode()
        # As the kubelet does: the byte limit counts from the first line after the tail.
        limit = params.get("limitBytes")
        return data[: int(limit)] if limit else data


def _line(event: Obj) -> bytes:
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def _event(change: Change, namespace: str | None, match: Matcher) -> Obj | None:
    obj = change.obj
    if namespace is not None and obj["metadata"].get("namespace") != namespace:
        return None
    now = match(obj)
    if change.type == "MODIFIED" and change.old is not None:
        before = match(change.old)
        if before and not now:
            return {"type": "DELETED", "object": obj}
        if now and not before:
            return {"type": "ADDED", "object": obj}
    return {"type": change.type, "object": obj} if now else None


__all__ = ["KINDS", "ApiServer", "Route", "validate"]


def _grace(params: Mapping[str, str], options: Obj) -> int | None:
    """``gracePeriodSeconds`` of a deletion (query or DeleteOptions body), None if unset."""
    value = params.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
    if value is None or value == "":
        return None
    try:
        return max(0, int(value))
    except (TypeError, ValueError) as exc:
        raise bad_request(f"invalid gracePeriodSeconds: {value!r}") from exc
