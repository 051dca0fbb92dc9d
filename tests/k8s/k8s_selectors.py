"""Label and field selectors as the Kubernetes API parses them.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``
(exists) and ``!a`` (does not exist), comma separated and ANDed. Field selectors:
``path=value``, ``path==value``, ``path!=value`` on dotted paths of the object.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from k8s_store import ResourceKind, bad_request, field_label_supported

Matcher = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*({_VALUE})\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split_requirements(selector: str) -> list[str]:
    """Split on commas that are not inside a ``( ... )`` value set."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Callable[[Mapping[str, str]], bool]:
    if m := _SET_RE.match(text):
        key, op, raw = m.group(1), m.group(2), m.group(3)
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _CMP_RE.match(text):
        key, op, value = m.group(1), m.group(2), m.group(3)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS_RE.match(text):
        negate, key = m.group(1) == "!", m.group(2)
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {text.strip()!r}")


def parse_label_selector(selector: str | None) -> Matcher:
    """A predicate over an object (its ``metadata.labels``); 400 on a malformed selector."""
    if not selector or not selector.strip():
        return lambda _obj: True
    requirements = [_requirement(part) for part in _split_requirements(selector)]

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req(labels) for req in requirements)

    return match


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The value at a dotted path as the API compares it: a string, "" when absent."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(selector: str | None, kind: ResourceKind) -> Matcher:
    """A predicate over an object; 400 for a malformed selector or an unsupported field."""
    if not selector or not selector.strip():
        return lambda _obj: True
    terms: list[tuple[str, bool, str]] = []
    for part in selector.split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if m is None:
            raise bad_request(f"invalid field selector: {part.strip()!r}")
        path, op, value = m.group(1), m.group(2), m.group(3)
        if not field_label_supported(kind, path):
            raise bad_request(
                f'field label not supported: "{path}" is not a known field selector for {kind.kind}'
            )
        terms.append((path, op == "!=", value))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) != value) == neg for path, neg, value in terms)

    return match


def selector_matcher(
    kind: ResourceKind, label_selector: str | None, field_selector: str | None
) -> Matcher:
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector, kind)
    return lambda obj: labels(obj) and fields(obj)
