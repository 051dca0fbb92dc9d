"""Fault injection for the Kubernetes API emulator: one-shot errors, stalls and watch faults.

A request is described by its verb (``get``, ``list``, ``watch``, ``create``, ``update``,
``patch``, ``delete``) and its resource (``jobs``, ``pods``, ``pods/log``, ``jobs/status``,
...). A fault's ``verb`` may be a Kubernetes verb, an HTTP method (``GET`` covers get, list
and watch; ``POST`` is create; ``PUT`` update) or ``*``; its ``resource`` may be ``*``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from k8s_store import ApiError

_HTTP_VERBS = {
    "GET": {"get", "list", "watch"},
    "POST": {"create"},
    "PUT": {"update"},
    "PATCH": {"patch"},
    "DELETE": {"delete"},
}

_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _verb_matches(pattern: str, verb: str) -> bool:
    if pattern == "*":
        return True
    if pattern.upper() in _HTTP_VERBS:
        return verb in _HTTP_VERBS[pattern.upper()]
    return pattern.lower() == verb


@dataclass
class _Rule:
    verb: str
    resource: str
    namespace: str | None
    times: int

    def matches(self, verb: str, resource: str, namespace: str) -> bool:
        return (
            _verb_matches(self.verb, verb)
            and self.resource in ("*", resource)
            and (self.namespace is None or self.namespace == namespace)
        )


@dataclass
class ErrorRule(_Rule):
    status: int = 500
    reason: str | None = None
    message: str | None = None
    retry_after: int | None = None

    def error(self) -> ApiError:
        reason = self.reason or _REASONS.get(self.status, "InternalError")
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        details: dict[str, object] | None = None
        if self.retry_after is not None:
            details = {"retryAfterSeconds": self.retry_after}
        return ApiError(
            self.status,
            reason,
            self.message or f"injected fault: {reason}",
            details,
            headers,
        )


@dataclass
class StallRule(_Rule):
    seconds: float = 1.0


@dataclass
class WatchFault(_Rule):
    """Applied to one watch stream: drop the connection after some events, send every
    event twice, or swap neighbouring events."""

    drop_after: int | None = None
    duplicate: bool = False
    reorder: bool = False


@dataclass
class Faults:
    """Queued faults; each rule fires ``times`` times, then is gone."""

    errors: list[ErrorRule] = field(default_factory=list)
    stalls: list[StallRule] = field(default_factory=list)
    watches: list[WatchFault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fired: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, verb, resource)

    def _take(self, rules: list[_Rule], verb: str, resource: str, namespace: str) -> _Rule | None:
        with self.lock:
            for rule in rules:
                if rule.matches(verb, resource, namespace):
                    rule.times -= 1
                    if rule.times <= 0:
                        rules.remove(rule)
                    return rule
        return None

    def take_error(self, verb: str, resource: str, namespace: str) -> ApiError | None:
        rule = self._take(self.errors, verb, resource, namespace)  # type: ignore[arg-type]
        if rule is None:
            return None
        assert isinstance(rule, ErrorRule)
        self.fired.append(("error", verb, resource))
        return rule.error()

    def take_stall(self, verb: str, resource: str, namespace: str) -> float:
        rule = self._take(self.stalls, verb, resource, namespace)  # type: ignore[arg-type]
        if rule is None:
            return 0.0
        assert isinstance(rule, StallRule)
        self.fired.append(("stall", verb, resource))
        return rule.seconds

    def take_watch(self, resource: str, namespace: str) -> WatchFault | None:
        rule = self._take(self.watches, "watch", resource, namespace)  # type: ignore[arg-type]
        if rule is not None:
            assert isinstance(rule, WatchFault)
            self.fired.append(("watch", "watch", resource))
        return rule

    def clear(self) -> None:
        with self.lock:
            self.errors.clear()
            self.stalls.clear()
            self.watches.clear()
