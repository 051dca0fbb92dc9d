"""Fields of tabular files, inferred from their first bytes: CSV headers, JSON Lines keys.

A field's type is the narrowest that fits every sampled value: integer,
then float, then boolean, else text. A sample never decides on less than a
complete line: the last line of a cut-off head is dropped. Nested JSON values
(objects, arrays) are left out, since a record set column cannot hold them
as a plain value. Nothing here reads storage; callers pass the bytes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any

CSV_TYPES = {"text/csv", "text/tab-separated-values"}
JSON_LINES_TYPES = {"application/jsonlines", "application/jsonl", "application/x-ndjson"}
TABULAR_TYPES = CSV_TYPES | JSON_LINES_TYPES
HEAD_BYTES = 64 * 1024
SAMPLE_ROWS = 200
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")
_BOOLEANS = {"true", "false"}


@dataclass(frozen=True)
class InferredField:
    name: str
    data_type: str  # a schema.org type: sc:Integer, sc:Float, sc:Boolean, sc:Text


def _complete_lines(head: bytes, *, whole: bool) -> str:
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    if whole:
        return text
    cut = text.rfind("\n")
    return text[: cut + 1] if cut >= 0 else ""


def _text_type(values: list[str]) -> str:
    present = [value.strip() for value in values if value.strip()]
    if not present or len(present) < len(values):
        return "sc:Text"
    if all(_INTEGER.fullmatch(value) for value in present):
        return "sc:Integer"
    if all(_FLOAT.fullmatch(value) for value in present):
        return "sc:Float"
    if all(value.lower() in _BOOLEANS for value in present):
        return "sc:Boolean"
    return "sc:Text"


def csv_fields(head: bytes, *, whole: bool, delimiter: str = ",") -> list[InferredField]:
    """The header's columns, typed by the rows that follow it in ``head``."""
    reader = csv.reader(io.StringIO(_complete_lines(head, whole=whole)), delimiter=delimiter)
    rows = [row for _, row in zip(range(SAMPLE_ROWS + 1), reader, strict=False)]
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    fields = []
    for index, name in enumerate(header):
        values = [row[index] if index < len(row) else "" for row in body]
        fields.append(InferredField(name=name, data_type=_text_type(values) if body else "sc:Text"))
    return fields


def _json_type(values: list[Any]) -> str | None:
    if any(isinstance(value, dict | list) for value in values):
        return None
    if any(value is None for value in values):
        return "sc:Text"
    if all(isinstance(value, bool) for value in values):
        return "sc:Boolean"
    if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return "sc:Integer"
    if all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        return "sc:Float"
    return "sc:Text"


def json_lines_fields(head: bytes, *, whole: bool) -> list[InferredField]:
    """The keys of the first objects, in first-seen order, typed by their values."""
    objects = []
    for line in _complete_lines(head, whole=whole).splitlines()[:SAMPLE_ROWS]:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: arrays nested too deep
            return []
        if isinstance(value, dict):
            objects.append(value)
    keys: dict[str, None] = {}
    for obj in objects:
        keys.update(dict.fromkeys(obj))
    fields = []
    for key in keys:
        values = [obj.get(key) for obj in objects]
        data_type = _json_type(values)
        if data_type is not None:
            fields.append(InferredField(name=key, data_type=data_type))
    return fields


def infer_fields(media_type: str, head: bytes, *, whole: bool) -> list[InferredField]:
    """The fields of a CSV, TSV or JSON Lines file; none for any other type."""
    if media_type == "text/csv":
        return csv_fields(head, whole=whole)
    if media_type == "text/tab-separated-values":
        return csv_fields(head, whole=whole, delimiter="\t")
    if media_type in JSON_LINES_TYPES:
        return json_lines_fields(head, whole=whole)
    return []
