"""A cache of one kind of object (Jobs or pods), kept by a list and then a watch.

The informer pattern, level-triggered: a label-selected list fills the cache
and gives a resourceVersion; a watch from it (in a daemon thread) marks the
names of changed objects dirty; :meth:`WatchedCache.refresh` reads each dirty
object again (or re-lists when many are dirty) and stores its current state.
Events are hints, never state, so duplicated, reordered or missed events are
harmless. On 410 Gone (a watch or list below the compaction floor) the thread
re-lists; on a dropped connection it watches again from the last
resourceVersion it was given. resourceVersions are passed back as opaque
tokens and never compared.

An object that goes is kept as *departed* (its last record, passed through
``on_depart``, which the pods cache uses to stamp when it was seen gone) until
the owner forgets it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from credits.jobs.executors.base import ExecutorError
from credits.jobs.executors.kube_calls import NotFound, RetryPolicy, call

logger = logging.getLogger(__name__)
Obj = dict[str, Any]
_T = TypeVar("_T")
RELIST_ABOVE = 256  # dirty names past which one list is cheaper than a read each
PAGE_SIZE = 500


class Gone(Exception):
    """The resourceVersion is below the compaction floor: list again."""


@dataclass
class ListWatchSource:
    """How to list, watch and read one kind in one namespace with one selector."""

    what: str  # "jobs", "pods": for messages
    list_fn: Callable[..., Any]  # e.g. BatchV1Api.list_namespaced_job
    read_fn: Callable[..., Any]  # e.g. BatchV1Api.read_namespaced_job
    namespace: str
    selector: str
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    watch_timeout_s: int = 240

    def list_all(self) -> tuple[list[Obj], str]:
        """Every object, page by page, and the list's resourceVersion."""
        items: list[Obj] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"label_selector": self.selector, "limit": PAGE_SIZE}
            if token:
                kwargs["_continue"] = token
            response = call(
                f"listing {self.what}",
                self.policy,
                self.list_fn,
                self.namespace,
                _preload_content=False,
                **kwargs,
            )
            page = json.loads(response.data)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, str(meta.get("resourceVersion", ""))

    def read(self, name: str) -> Obj:
        """The current object; raises NotFound when it is gone."""
        what = f"reading {self.what} {name}"
        response = call(
            what, self.policy, self.read_fn, name, self.namespace, _preload_content=False
        )
        return dict(json.loads(response.data))

    def open_watch(self, resource_version: str) -> Any:
        return self.list_fn(
            self.namespace,
            label_selector=self.selector,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout_s,
            _preload_content=False,
            _request_timeout=(10, self.watch_timeout_s + 30),
        )


class WatchedCache(Generic[_T]):
    """Records (``digest`` of each object) by name, kept current by list and watch."""

    def __init__(
        self,
        source: ListWatchSource,
        digest: Callable[[Obj], _T | None],
        on_depart: Callable[[_T], _T] | None = None,
    ) -> None:
        self.source = source
        self._digest = digest
        self._on_depart = on_depart or (lambda record: record)
        self._lock = threading.Lock()
        self._records: dict[str, _T] = {}
        self._departed: dict[str, _T] = {}  # removed since; kept for their times
        self._dirty: set[str] = set()
        # The last state a watch event showed of each dirty name: kept only to remember
        # an object deleted before it could be read (its final times), never as state.
        self._last_seen: dict[str, _T] = {}
        self._resource_version: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self._response_lock = threading.Lock()
        self.relists = 0

    # -- reading -------------------------------------------------------------------

    def records(self) -> dict[str, _T]:
        with self._lock:
            return dict(self._records)

    def departed(self) -> dict[str, _T]:
        with self._lock:
            return dict(self._departed)

    def forget_departed(self, keep: Callable[[_T], bool]) -> None:
        with self._lock:
            self._departed = {k: v for k, v in self._departed.items() if keep(v)}

    # -- writing -------------------------------------------------------------------

    def start(self) -> None:
        """Lists once in the caller (so errors surface there), then watches in a thread."""
        if self._thread is not None:
            return
        self._relist()
        self._thread = threading.Thread(
            target=self._run, name=f"kube-watch-{self.source.what}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        with self._response_lock:
            self._stop.set()
            response = self._response
        if response is not None:
            # close() alone waits for the watch thread's blocked read to return, which
            # is the next event or bookmark (a second or more); shutting the socket's
            # read side first (urllib3 2.3+) ends that read at once.
            for step in (response.shutdown, response.close):
                try:
                    step()
                except Exception:  # a stream already released or dead may refuse either
                    logger.debug("closing the %s watch", self.source.what, exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout=0.2)

    def put(self, obj: Obj) -> None:
        """Stores an object just read or written (the current state, as the API said)."""
        name = (obj.get("metadata") or {}).get("name")
        record = self._digest(obj)
        if name is None or record is None:
            return
        with self._lock:
            self._records[name] = record
            self._departed.pop(name, None)
            # What a watch showed before this answer is older than it: never prefer it.
            self._last_seen.pop(name, None)

    def depart(self, name: str) -> None:
        """The object is gone now (its deletion was answered): keep it as departed."""
        with self._lock:
            record = self._records.pop(name, None)
            if record is not None:
                self._departed[name] = self._on_depart(record)

    def mark_dirty(self, name: str, last_seen: Obj | None = None) -> None:
        record = self._digest(last_seen) if last_seen is not None else None
        with self._lock:
            self._dirty.add(name)
            if record is not None:
                self._last_seen[name] = record

    def refresh(self) -> None:
        """Reads every object the watch said changed; raises ExecutorError when it cannot."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        try:
            if len(dirty) > RELIST_ABOVE:
                self._replace(*self.source.list_all()[:1])
                return
            for name in sorted(dirty):
                self._reread(name)
        except ExecutorError:
            with self._lock:
                self._dirty |= dirty
            raise

    def _reread(self, name: str) -> None:
        try:
            self.put(self.source.read(name))
        except NotFound:
            with self._lock:
                cached = self._records.pop(name, None)
                # Deleted before it could be read: the watch's last state of it (a pod's
                # terminated container, its finishedAt) is newer than the cached one
                # (say, still Running), whose stop would be taken as when seen gone.
                record = self._last_seen.get(name) or cached
                if record is not None and name not in self._departed:
                    self._departed[name] = self._on_depart(record)
        finally:
            with self._lock:
                self._last_seen.pop(name, None)

    def _relist(self) -> None:
        items, resource_version = self.source.list_all()
        self._replace(items)
        self._resource_version = resource_version
        self.relists += 1

    def _replace(self, items: list[Obj]) -> None:
        fresh: dict[str, _T] = {}
        for obj in items:
            record = self._digest(obj)
            if record is not None:
                fresh[obj["metadata"]["name"]] = record
        with self._lock:
            for name, record in self._records.items():
                if name not in fresh:
                    self._departed[name] = self._on_depart(record)
            for name in fresh:
                self._departed.pop(name, None)
            self._records = fresh

    # -- the watch thread ----------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self._resource_version is None:
                    self._relist()
                self._watch_once()
                failures = 0
            except Gone:
                logger.info("%s watch expired (410); listing again", self.source.what)
                self._resource_version = None
            except Exception as error:  # the thread must outlive any failure: watch again
                if self._stop.is_set():
                    return
                failures += 1
                logger.info("%s watch failed (%s); watching again", self.source.what, error)
                self._stop.wait(min(0.05 * 2**failures, 5.0))

    def _watch_once(self) -> None:
        if self._resource_version is None:
            raise Gone
        try:
            response = self.source.open_watch(self._resource_version)
        except ApiException as error:
            if error.status == 410:
                raise Gone from error
            raise
        with self._response_lock:  # a stop() now either sees this response or ends us here
            if self._stop.is_set():
                response.close()  # unread: its connection must not go back to the pool
                return
            self._response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    return
                self._on_event(json.loads(line))
        finally:
            with self._response_lock:
                self._response = None
                if self._stop.is_set():  # stop() may have shut it: never back to the pool
                    response.close()
                else:
                    response.release_conn()

    def _on_event(self, event: Obj) -> None:
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            if obj.get("code") == 410:
                raise Gone
            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
        meta = obj.get("metadata") or {}
        if event.get("type") != "BOOKMARK" and meta.get("name"):
            self.mark_dirty(meta["name"], obj)
        if meta.get("resourceVersion"):
            self._resource_version = str(meta["resourceVersion"])
