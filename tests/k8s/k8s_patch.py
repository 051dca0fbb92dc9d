"""PATCH bodies: JSON merge patch (RFC 7386), strategic merge (as merge for maps, lists
replaced whole) and JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

from k8s_store import ApiError

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE, STRATEGIC, JSON_PATCH)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _patch_error(f"invalid JSON pointer {pointer!r}")
    return [_unescape(t) for t in pointer[1:].split("/")]


def _patch_error(message: str) -> ApiError:
    return ApiError(422, "Invalid", f"the server rejected our request: {message}")


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                raise _patch_error(f"path not found: /{'/'.join(tokens)}")
            doc = doc[token]
        elif isinstance(doc, list):
            try:
                doc = doc[int(token)]
            except (ValueError, IndexError) as exc:
                raise _patch_error(f"bad array index {token!r}") from exc
        else:
            raise _patch_error(f"cannot descend into a scalar at {token!r}")
    return doc


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                index = int(last)
            except ValueError as exc:
                raise _patch_error(f"bad array index {last!r}") from exc
            if not 0 <= index <= len(parent):
                raise _patch_error(f"array index {index} out of range")
            parent.insert(index, value)
    else:
        raise _patch_error("cannot add to a scalar")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise _patch_error("cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _patch_error(f"path not found: /{'/'.join(tokens)}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        try:
            return doc, parent.pop(int(last))
        except (ValueError, IndexError) as exc:
            raise _patch_error(f"bad array index {last!r}") from exc
    raise _patch_error("cannot remove from a scalar")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy and test."""
    if not isinstance(operations, list):
        raise _patch_error("a JSON patch is a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _patch_error(f"malformed operation {op!r}")
        doc = _apply_op(doc, op)
    return doc


def _apply_op(doc: Any, op: dict[str, Any]) -> Any:
    name = op["op"]
    tokens = _split_pointer(op["path"])
    if name == "add":
        return _add(doc, tokens, copy.deepcopy(op.get("value")))
    if name == "remove":
        return _remove(doc, tokens)[0]
    if name == "replace":
        _resolve(doc, tokens)  # must exist
        if tokens:
            doc, _ = _remove(doc, tokens)
        return _add(doc, tokens, copy.deepcopy(op.get("value")))
    if name in ("move", "copy"):
        source = _split_pointer(op.get("from", ""))
        if name == "move":
            doc, value = _remove(doc, source)
        else:
            value = copy.deepcopy(_resolve(doc, source))
        return _add(doc, tokens, value)
    if name == "test":
        if _resolve(doc, tokens) != op.get("value"):
            raise _patch_error(f"test operation failed at {op['path']}")
        return doc
    raise _patch_error(f"unknown operation {name!r}")


def apply_patch(target: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply a PATCH body of the given content type to a copy of ``target``."""
    base = content_type.split(";", maxsplit=1)[0].strip().lower()
    if base == JSON_PATCH:
        result = json_patch(target, patch)
    elif base in (MERGE, STRATEGIC):
        if not isinstance(patch, dict):
            raise _patch_error("a merge patch must be a JSON object")
        result = merge_patch(target, patch)
    else:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(PATCH_TYPES)}",
        )
    if not isinstance(result, dict):
        raise _patch_error("the patched object is not a JSON object")
    return result
