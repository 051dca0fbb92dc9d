"""In-process object store of the Kubernetes API emulator.

One global resourceVersion counter (an int here, a string on the wire), every change
kept in a history list for watches, and a compaction floor below which a watch or a
continue token answers 410 Gone. The store is thread safe: the HTTP handler threads,
the controllers and the tests all go through ``Store.lock``.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

DNS_LABEL_MAX = 63
NAME_MAX = 253


@dataclass(frozen=True)
class ResourceKind:
    """One resource type the emulator serves."""

    plural: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    field_labels: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``jobs.batch`` or ``pods``: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_COMMON_FIELDS = ("metadata.name", "metadata.namespace")

KINDS: dict[str, ResourceKind] = {
    k.plural: k
    for k in (
        ResourceKind("namespaces", "Namespace", "", "v1", False, ("ns",), ("status.phase",)),
        ResourceKind(
            "nodes", "Node", "", "v1", False, ("no",), ("spec.unschedulable",), ("status",)
        ),
        ResourceKind(
            "pods",
            "Pod",
            "",
            "v1",
            True,
            ("po",),
            (
                "status.phase",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.podIP",
                "status.nominatedNodeName",
            ),
            ("status", "log"),
        ),
        ResourceKind(
            "events",
            "Event",
            "",
            "v1",
            True,
            ("ev",),
            (
                "involvedObject.kind",
                "involvedObject.name",
                "involvedObject.namespace",
                "involvedObject.uid",
                "reason",
                "type",
            ),
        ),
        ResourceKind("services", "Service", "", "v1", True, ("svc",)),
        ResourceKind("jobs", "Job", "batch", "v1", True, (), ("status.successful",), ("status",)),
        ResourceKind(
            "networkpolicies", "NetworkPolicy", "networking.k8s.io", "v1", True, ("netpol",)
        ),
    )
}


def field_label_supported(kind: ResourceKind, label: str) -> bool:
    return label in _COMMON_FIELDS or label in kind.field_labels


class ApiError(Exception):
    """An error the API answers as a ``Status`` object with an HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(kind: ResourceKind, name: str) -> Obj:
    details: Obj = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    return details


def not_found(kind: ResourceKind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', _details(kind, name))


def already_exists(kind: ResourceKind, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{kind.qualified} "{name}" already exists', _details(kind, name)
    )


def conflict(kind: ResourceKind, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        _details(kind, name),
    )


def invalid(kind: ResourceKind, name: str, causes: list[tuple[str, str]]) -> ApiError:
    details = _details(kind, name)
    details["causes"] = [
        {"reason": "FieldValueInvalid", "message": msg, "field": fld} for fld, msg in causes
    ]
    text = "; ".join(f"{fld}: {msg}" for fld, msg in causes)
    return ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


@dataclass
class Change:
    """One entry of the watch history."""

    rv: int
    plural: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None = None


Key = tuple[str, str, str]  # plural, namespace ("" when cluster scoped), name


class _Objects(dict[Key, Obj]):
    """Objects by key, with a per-type index so listing one type does not scan all."""

    def __init__(self) -> None:
        super().__init__()
        self.by_plural: dict[str, dict[tuple[str, str], Obj]] = {}

    def __setitem__(self, key: Key, value: Obj) -> None:
        super().__setitem__(key, value)
        self.by_plural.setdefault(key[0], {})[(key[1], key[2])] = value

    def pop(self, key: Key) -> Obj:  # type: ignore[override]
        value = super().pop(key)
        del self.by_plural[key[0]][(key[1], key[2])]
        return value


@dataclass
class Store:
    """Objects by (plural, namespace, name), the global resourceVersion and the history.

    Stored objects are never mutated in place (a write stores a new dict), so the history,
    the write methods' return values and ``find``/``items`` share them: callers must treat
    them as read only (``get`` returns a copy)."""

    clock: Callable[[], str] = field(default=lambda: "1970-01-01T00:00:00Z")
    objects: _Objects = field(default_factory=_Objects)
    history: list[Change] = field(default_factory=list)
    rv: int = 1
    floor: int = 0
    history_limit: int = 200_000
    lock: threading.RLock = field(default_factory=threading.RLock)
    # how a delete held by finalizers will propagate once the object goes
    _pending_propagation: dict[Key, str] = field(default_factory=dict)
    changed: threading.Condition = field(init=False)
    # Called (under the lock) after an object is removed for good: garbage collection.
    on_removed: list[Callable[[str, Obj, str], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    # -- reading -----------------------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> Obj:
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            if obj is None:
                raise not_found(KINDS[plural], name)
            return copy.deepcopy(obj)

    def find(self, plural: str, namespace: str, name: str) -> Obj | None:
        """The stored object itself (no copy) or None; for the controllers, under the lock."""
        return self.objects.get((plural, namespace, name))

    def items(self, plural: str, namespace: str | None = None) -> list[Obj]:
        """Stored objects (not copies) of a type, sorted by namespace and name."""
        with self.lock:
            of_type = self.objects.by_plural.get(plural, {})
            keys = sorted(k for k in of_type if namespace is None or k[0] == namespace)
            return [of_type[k] for k in keys]

    # -- writing -----------------------------------------------------------------------

    def _record(self, plural: str, type_: str, obj: Obj, old: Obj | None) -> None:
        # stored objects are never mutated in place, so history can share them
        self.history.append(Change(self.rv, plural, type_, obj, old))
        if len(self.history) > self.history_limit:  # like etcd, forget the oldest half
            self.compact(self.history[len(self.history) // 2].rv)
        self.changed.notify_all()

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def create(self, plural: str, obj: Obj) -> Obj:
        kind = KINDS[plural]
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            namespace = meta.get("namespace", "") if kind.namespaced else ""
            if kind.namespaced and ("namespaces", "", namespace) not in self.objects:
                raise not_found(KINDS["namespaces"], namespace)
            if not meta.get("name") and meta.get("generateName"):
                while True:
                    name = meta["generateName"] + uuid.uuid4().hex[:5]
                    if (plural, namespace, name) not in self.objects:
                        meta["name"] = name
                        break
            name = meta.get("name", "")
            if (plural, namespace, name) in self.objects:
                raise already_exists(kind, name)
            obj["kind"] = kind.kind
            obj["apiVersion"] = kind.api_version
            meta.pop("deletionTimestamp", None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = self.clock()
            meta["resourceVersion"] = self._next_rv()
            if not meta.get("labels"):
                meta.pop("labels", None)
            self.objects[(plural, namespace, name)] = obj
            self._record(plural, "ADDED", obj, None)
            return obj

    def update(self, plural: str, obj: Obj, *, check_rv: bool = True) -> Obj:
        """Replace an object (already merged by the caller); honours finalizers.

        With ``check_rv`` a resourceVersion in the body that is not the current one is a
        409 Conflict. An object being deleted whose last finalizer goes is removed.
        """
        kind = KINDS[plural]
        with self.lock:
            meta = obj.get("metadata", {})
            namespace = meta.get("namespace", "") if kind.namespaced else ""
            name = meta.get("name", "")
            current = self.objects.get((plural, namespace, name))
            if current is None:
                raise not_found(kind, name)
            cur_meta = current["metadata"]
            body_rv = meta.get("resourceVersion")
            if check_rv and body_rv and body_rv != cur_meta["resourceVersion"]:
                raise conflict(kind, name)
            new = {**obj, "metadata": dict(obj.get("metadata") or {})}
            new_meta = new.setdefault("metadata", {})
            for immutable in ("uid", "creationTimestamp", "deletionTimestamp", "namespace"):
                if immutable in cur_meta:
                    new_meta[immutable] = cur_meta[immutable]
                else:
                    new_meta.pop(immutable, None)
            if cur_meta.get("deletionTimestamp"):
                added = set(new_meta.get("finalizers") or []) - set(
                    cur_meta.get("finalizers") or []
                )
                if added:
                    raise invalid(
                        kind,
                        name,
                        [
                            (
                                "metadata.finalizers",
                                "no new finalizers can be added if the object is being deleted",
                            )
                        ],
                    )
            new["kind"] = kind.kind
            new["apiVersion"] = kind.api_version
            if not new_meta.get("labels"):
                new_meta.pop("labels", None)
            if not new_meta.get("finalizers"):
                new_meta.pop("finalizers", None)
            new_without_rv = {**new, "metadata": {**new_meta, "resourceVersion": None}}
            cur_without_rv = {**current, "metadata": {**cur_meta, "resourceVersion": None}}
            if new_without_rv == cur_without_rv:
                return current  # a no-op update keeps its resourceVersion
            new_meta["resourceVersion"] = self._next_rv()
            self.objects[(plural, namespace, name)] = new
            self._record(plural, "MODIFIED", new, current)
            if _removable(new_meta):
                self._remove(plural, namespace, name, "Background")
            return new

    def begin_graceful_delete(
        self, plural: str, namespace: str, name: str, *, at: str, grace_s: int
    ) -> Obj:
        """A pod's graceful deletion: it gets ``deletionTimestamp`` (when its grace ends)
        and ``deletionGracePeriodSeconds`` and stays, being terminated, until the
        kubelet deletes it for good once its containers stopped."""
        with self.lock:
            old = self.objects[(plural, namespace, name)]
            current = copy.deepcopy(old)
            meta = current["metadata"]
            meta["deletionTimestamp"] = at
            meta["deletionGracePeriodSeconds"] = grace_s
            meta["resourceVersion"] = self._next_rv()
            self.objects[(plural, namespace, name)] = current
            self._record(plural, "MODIFIED", current, old)
            return current

    def delete(
        self,
        plural: str,
        namespace: str,
        name: str,
        *,
        propagation: str = "Background",
        precondition_rv: str | None = None,
    ) -> tuple[Obj, bool]:
        """Delete an object: (final object, gone). With finalizers it only gets a
        deletionTimestamp and stays until a write removes the last finalizer."""
        kind = KINDS[plural]
        with self.lock:
            current = self.objects.get((plural, namespace, name))
            if current is None:
                raise not_found(kind, name)
            if precondition_rv and precondition_rv != current["metadata"]["resourceVersion"]:
                raise conflict(kind, name)
            meta = current["metadata"]
            if meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    old, current = current, copy.deepcopy(current)
                    meta = current["metadata"]
                    meta["deletionTimestamp"] = self.clock()
                    meta["deletionGracePeriodSeconds"] = 0
                    meta["resourceVersion"] = self._next_rv()
                    self.objects[(plural, namespace, name)] = current
                    self._record(plural, "MODIFIED", current, old)
                    self._pending_propagation[(plural, namespace, name)] = propagation
                return current, False
            return self._remove(plural, namespace, name, propagation), True

    def _remove(self, plural: str, namespace: str, name: str, propagation: str) -> Obj:
        stored = self.objects.pop((plural, namespace, name))
        propagation = self._pending_propagation.pop((plural, namespace, name), propagation)
        obj = {**stored, "metadata": {**stored["metadata"], "resourceVersion": self._next_rv()}}
        self._record(plural, "DELETED", obj, None)
        for hook in self.on_removed:
            hook(plural, obj, propagation)
        return obj

    # -- watch history -----------------------------------------------------------------

    def compact(self, rv: int | None = None) -> int:
        """Forget history up to ``rv`` (default: now); watches from below answer 410."""
        with self.lock:
            self.floor = self.rv if rv is None else min(rv, self.rv)
            self.history = [c for c in self.history if c.rv > self.floor]
            return self.floor

    def changes_since(self, plural: str, rv: int) -> list[Change]:
        """History entries of a type after ``rv``; raises 410 when ``rv`` is compacted."""
        with self.lock:
            if rv < self.floor:
                raise gone(f"too old resource version: {rv} ({self.floor})")
            # history is sorted by rv; a linear scan from the end is enough for tests
            start = len(self.history)
            while start > 0 and self.history[start - 1].rv > rv:
                start -= 1
            return [c for c in self.history[start:] if c.plural == plural]


def _removable(meta: Obj) -> bool:
    """Being deleted with nothing to wait for: no finalizer, no grace still running."""
    return bool(
        meta.get("deletionTimestamp")
        and not meta.get("finalizers")
        and not meta.get("deletionGracePeriodSeconds")
    )
