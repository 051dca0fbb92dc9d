"""Bad input into every field of every operation of the served OpenAPI document.

As a careless or hostile client would: for each JSON operation, a corpus of bad
values goes into each field the schema names (deep nesting, a lone surrogate,
NUL, huge and long strings, wrong types, an integer for a time, numbers out of
range, negatives and zeros, missing fields), then malformed bodies, wrong
content types, a body over the size limit and bad ``Idempotency-Key`` headers.
Every other operation gets a corpus into each query parameter.

Every answer must be one the operation documents and never a server error;
every refusal must be an ``application/problem+json`` document and leave every
row of the database as it was (the ledger verified as well). A request is
*expected* to be refused when what it sends breaks the operation's own JSON
schema, or one of the rules every body is held to (``credits/api/parsing.py``);
a request the schema allows may succeed.

Each operation starts from a request that succeeds (checked first) as a caller
who may make it, so that a refusal comes from the bad value and not from who
sent it. Each request runs in a SAVEPOINT rolled back after its checks, so every
case meets the world of tests/api_world.py as built.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from api_world import (
    FUNDER_P,
    FUNDER_Q,
    OPS,
    RESEARCHER_A,
    RESEARCHER_B,
    REVIEWER,
    SYSTEM,
    World,
    build_world,
    job_body,
    program_body,
    world_executor,
)
from conftest import joined_factory, rolled_back_session
from datasets_api_world import UPLOAD_BYTES, UPLOAD_NAME, with_datasets
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from labelling_api_world import LabellingApiWorld, order_body, with_labelling
from sqlalchemy import Connection, Engine, event, inspect, select
from sqlalchemy.orm import Session
from transparency_api_world import cosign_body, transparency_settings, with_checkpoint
from werkzeug.test import TestResponse

from credits.api.datasets import STORE_KEY
from credits.api.problems import PROBLEM_MEDIA_TYPE, Problem
from credits.app import create_app
from credits.db import Base, utcnow
from credits.identity.tokens import create_token
from credits.ledger.verify import verify_ledger
from credits.settings import load_settings
from credits.storage import PART_SIZE, blob_store_for_url
from credits.storage.fs_store import FsspecBlobStore

pytestmark = pytest.mark.slow

# Small limits, so that an oversized body costs little to build and send.
REQUEST_MAX_BYTES = 64 * 1024
USAGE_REQUEST_MAX_BYTES = 128 * 1024
USAGE_OPERATION = "usage.report_usage"
# A dataset file may be this large here: over it, a file body is refused.
DATASET_MAX_FILE_BYTES = 256 * 1024
METER = "ops_meter"  # ops, with a token that names the meter scope
LABEL_STUDIO = "label_studio"  # no token: the webhook's shared secret
WEBHOOK_SECRET = "bad-input-webhook-secret"
DEEP = "[" * 5000 + "]" * 5000
KEY_HEADER = "Idempotency-Key"
# A token's last use is recorded by every request: not a change a refusal may not make.
UNWATCHED_TABLES = frozenset({"api_tokens"})


class Raw(str):
    """JSON text sent as it is, where the corpus needs what json.dumps cannot write."""

    __slots__ = ()


MISSING = object()  # the field is left out


@dataclass(frozen=True)
class Value:
    """A bad value; ``refused``: refused whatever the schema says (a parsing rule)."""

    label: str
    value: object
    refused: bool = False


def field_values(max_bytes: int) -> list[Value]:
    return [
        Value("nested 5,000 deep", Raw(DEEP), refused=True),
        Value("1e999999", Raw("1e999999"), refused=True),
        Value("2**63", Raw(str(2**63)), refused=True),
        Value("a lone high surrogate", "\ud800", refused=True),
        Value("a lone low surrogate inside text", "a\udc00b", refused=True),
        Value("NUL inside text", "a\x00b", refused=True),
        Value("a string over the size limit", "x" * (max_bytes + 1), refused=True),
        Value("a 10,000-character string", "x" * 10_000),
        Value("an integer (a time as epoch seconds)", 1_700_000_000),
        Value("a number as text", "1"),
        Value("true", True),
        Value("null", None),
        Value("a fraction", 1.5),
        Value("-1", -1),
        Value("0", 0),
        Value("empty text", ""),
        Value("an array", []),
        Value("an object", {}),
        Value("left out", MISSING),
    ]


@dataclass(frozen=True)
class Start:
    """A request that succeeds: who sends it, the World field each path argument
    takes, and its body."""

    persona: str
    path: dict[str, str] = field(default_factory=dict)
    body: Callable[[World], dict[str, Any]] = lambda _: {}


def _iso(delta: timedelta) -> str:
    return (utcnow() + delta).isoformat()


def _new_program(world: World) -> dict[str, Any]:
    values = program_body(name="New call", owner_ids=[world.user_ids[FUNDER_Q]])
    return values | {key: values[key].isoformat() for key in ("opens_at", "closes_at")}


def _usage(world: World) -> dict[str, Any]:
    end = utcnow() - timedelta(minutes=1)
    record = {
        "source": "bad-input-meter",
        "record_id": "r1",
        "project_id": world.project_a,
        "currency": "gpu",
        "quantity": 60,
        "unit": "gpu_second",
        "start": (end - timedelta(minutes=1)).isoformat(),
        "end": end.isoformat(),
        "resource": world.flavour,
        "evidence": {"meter": "dcgm"},
    }
    return {"records": [record]}


IN_REVIEW = {"proposal_id": "proposal_in_review"}
DRAFT = {"proposal_id": "proposal_draft"}
DATASET_DRAFT = {"version_id": "ds_draft_id"}
DATASET_PUBLISHED = {"version_id": "ds_published_id"}
VENDOR = {"vendor_id": "lb_vendor"}


def _order(target: str) -> dict[str, str]:
    return {"order_id": target}


def _new_order(world: World) -> dict[str, Any]:
    assert isinstance(world, LabellingApiWorld)
    body = order_body(world)
    body["order"] |= {  # type: ignore[operator]
        "redundancy": 2,
        # One estimate only: both are refused (expected_seconds_per_item is for
        # per-hour prices).
        "expected_labels_per_item": "1.5",
        "target_dataset_id": world.ds_dataset_id,
    }
    return body


def _dataset_metadata(_: World) -> dict[str, Any]:
    return {
        "title": "Ice cores",
        "description": "Isotopes.",
        "creators": [
            {
                "name": "Lovelace, Ada",
                "name_type": "personal",
                "orcid": "0000-0002-1825-0097",
                "affiliation": "Uni",
                "ror": "03yrm5c26",
            }
        ],
        "license": "CC-BY-4.0",
        "keywords": ["ice"],
        "related_identifiers": [
            {"identifier": "10.1234/x", "identifier_type": "DOI", "relation_type": "Cites"}
        ],
        "citation": "Cite the paper.",
    }


def _datasheet(_: World) -> dict[str, Any]:
    return {
        name: f"The {name}."
        for name in (
            "motivation",
            "composition",
            "collection",
            "preprocessing",
            "uses",
            "distribution",
            "maintenance",
            "biases",
            "limitations",
            "sensitive_information",
        )
    }


STARTS: dict[str, Start] = {
    "grants.create_program": Start(FUNDER_P, body=_new_program),
    "grants.update_program": Start(
        FUNDER_P, {"program_id": "program_p_draft"}, lambda _: {"description": "Revised."}
    ),
    "grants.open_program": Start(FUNDER_P, {"program_id": "program_p_draft"}),
    "grants.close_program": Start(FUNDER_P, {"program_id": "program_p"}),
    "grants.add_program_owner": Start(
        FUNDER_P, {"program_id": "program_p"}, lambda w: {"user_id": w.user_ids[FUNDER_Q]}
    ),
    "grants.fund_program": Start(
        FUNDER_P,
        {"program_id": "program_p"},
        lambda _: {"currency": "gpu", "amount_micro": 5_000_000, "reason": "top-up"},
    ),
    "grants.create_project": Start(
        RESEARCHER_A,
        body=lambda _: {
            "title": "Glacier flow",
            "field_of_science": "Glaciology",
            "institution": "Uni",
        },
    ),
    "grants.add_member": Start(
        RESEARCHER_A,
        {"project_id": "project_a"},
        lambda w: {"user_id": w.user_ids[RESEARCHER_B], "role": "member"},
    ),
    "grants.suspend_project": Start(
        OPS, {"project_id": "project_a"}, lambda _: {"reason": "audit"}
    ),
    "grants.unsuspend_project": Start(
        OPS, {"project_id": "project_a_suspended"}, lambda _: {"reason": "audit done"}
    ),
    "grants.archive_project": Start(
        RESEARCHER_A, {"project_id": "project_a"}, lambda _: {"reason": "finished"}
    ),
    "proposals.create_proposal": Start(
        RESEARCHER_A,
        body=lambda w: {
            "program_id": w.program_p,
            "project_id": w.project_a,
            "kind": "new",
            "title": "Firn density",
            "abstract": "Cores.",
            "justification": "Needed.",
            "requested": {"gpu": 1_000_000},
            "starts_at": _iso(timedelta(days=1)),
            "ends_at": _iso(timedelta(days=60)),
        },
    ),
    "proposals.update_proposal": Start(RESEARCHER_A, DRAFT, lambda _: {"title": "Revised"}),
    "proposals.submit_proposal": Start(RESEARCHER_A, DRAFT),
    "proposals.withdraw_proposal": Start(RESEARCHER_A, DRAFT, lambda _: {"reason": "later"}),
    "proposals.assign_reviewer": Start(
        FUNDER_P, IN_REVIEW, lambda w: {"user_id": w.reviewer_spare}
    ),
    "proposals.declare_conflict": Start(REVIEWER, IN_REVIEW, lambda _: {"reason": "colleague"}),
    "proposals.submit_review": Start(
        REVIEWER, IN_REVIEW, lambda _: {"scores": {"merit": 4, "fit": 5}, "comment": "Sound."}
    ),
    "proposals.award_proposal": Start(
        FUNDER_P,
        IN_REVIEW,
        lambda _: {
            "amounts": {"gpu": 1_000_000},
            "starts_at": _iso(timedelta(0)),
            "ends_at": _iso(timedelta(days=90)),
            "reason": "strong",
            "override_reason": "urgent",
        },
    ),
    "proposals.reject_proposal": Start(
        FUNDER_P, IN_REVIEW, lambda _: {"reason": "out of scope", "override_reason": "urgent"}
    ),
    "proposals.release_tranche": Start(
        FUNDER_P, {"tranche_id": "tranche"}, lambda _: {"progress_report": "Half done."}
    ),
    "pool.add_flavour": Start(
        OPS,
        body=lambda _: {
            "name": "h100-80gb",
            "node_label_value": "NVIDIA-H100-80GB-HBM3",
            "gpu_memory_gb": 80,
            "gpus_per_node": 8,
            "description": "Hopper",
        },
    ),
    "pool.change_flavour": Start(
        OPS, {"name": "flavour"}, lambda _: {"max_checkpoint_grace_seconds": 120}
    ),
    "pool.set_rate": Start(
        OPS,
        {"name": "flavour"},
        lambda _: {
            "micro_credits_per_gpu_hour": 3_000_000,
            "effective_from": _iso(timedelta(days=1)),
            "reason": "new prices",
        },
    ),
    USAGE_OPERATION: Start(METER, body=_usage),
    "jobs.submit_job": Start(
        RESEARCHER_A,
        {"project_id": "project_a"},
        lambda _: job_body(cpu=2, memory_gb=8.5, args=["--fast"], labels={"team": "ice"}),
    ),
    "jobs.cancel_job": Start(RESEARCHER_A, {"job_id": "job_a"}),
    "datasets.create_dataset": Start(
        RESEARCHER_A, {"project_id": "project_a"}, lambda _: {"title": "Firn cores"}
    ),
    "datasets.new_version": Start(RESEARCHER_A, {"dataset_id": "ds_released_id"}),
    "datasets.update_metadata": Start(RESEARCHER_A, DATASET_DRAFT, _dataset_metadata),
    "datasets.update_datasheet": Start(RESEARCHER_A, DATASET_DRAFT, _datasheet),
    "datasets.record_provenance": Start(
        RESEARCHER_A, DATASET_DRAFT, lambda w: {"job_ids": [], "allocation_ids": [w.allocation]}
    ),
    "datasets.remove_provenance": Start(
        RESEARCHER_A, DATASET_DRAFT, lambda w: {"job_ids": [], "allocation_ids": [w.allocation]}
    ),
    "datasets.start_upload": Start(
        RESEARCHER_A, DATASET_DRAFT, lambda _: {"name": "big/new.bin", "size": 3}
    ),
    "datasets.complete_upload": Start(
        RESEARCHER_A,
        DATASET_DRAFT | {"upload_id": "ds_upload"},
        lambda _: {"name": UPLOAD_NAME, "parts": 1},
    ),
    "datasets.publish": Start(RESEARCHER_A, DATASET_DRAFT),
    "datasets.deprecate": Start(RESEARCHER_A, DATASET_PUBLISHED, lambda _: {"note": "old"}),
    "datasets.takedown": Start(OPS, DATASET_PUBLISHED, lambda _: {"reason": "court order"}),
    "datasets.verify": Start(OPS, DATASET_PUBLISHED),
    "labelling.add_vendor": Start(
        OPS,
        body=lambda _: {
            "name": "Acme Labels",
            "adapter": "label_studio",
            "task_kinds": ["single_label", "text_spans"],
            "qc_options": {"gold_items": False, "max_redundancy": 3},
            "description": "Annotators on demand.",
        },
    ),
    "labelling.retire_vendor": Start(OPS, VENDOR),
    "labelling.restore_vendor": Start(OPS, VENDOR),
    "labelling.set_price": Start(
        OPS,
        VENDOR,
        lambda _: {
            "unit": "annotator_hour",
            "micro_credits_per_unit": 12_000_000,
            "fee_basis_points": 250,
            "effective_from": _iso(timedelta(days=1)),
            "reason": "new rates",
        },
    ),
    "labelling.create_order": Start(RESEARCHER_A, body=_new_order),
    "labelling_orders.quote_order": Start(RESEARCHER_A, _order("lb_draft")),
    "labelling_orders.place_order": Start(RESEARCHER_A, _order("lb_quoted")),
    "labelling_orders.cancel_order": Start(
        RESEARCHER_A, _order("lb_quoted"), lambda _: {"reason": "not needed"}
    ),
    "labelling_orders.accept_order": Start(RESEARCHER_A, _order("lb_delivered")),
    "labelling_orders.dispute_order": Start(
        RESEARCHER_A, _order("lb_delivered"), lambda _: {"reason": "wrong labels"}
    ),
    "labelling_orders.resolve_order": Start(
        OPS,
        _order("lb_disputed"),
        lambda _: {"resolution": "refunded", "note": "partly redone", "refund_micro": 100_000},
    ),
    "labelling_orders.mark_delivered": Start(OPS, _order("lb_invoice")),
    "labelling.label_studio_webhook": Start(
        LABEL_STUDIO, body=lambda _: {"action": "PROJECT_UPDATED", "project": {"id": 1}}
    ),
    "labelling_orders.assign_annotators": Start(
        RESEARCHER_A, _order("lb_draft"), lambda w: {"user_ids": [w.lb_annotator]}
    ),
    "transparency.post_cosignature": Start(OPS, body=cosign_body),
}
# Operations whose body is a file (application/octet-stream), sent as it is.
FILE_STARTS: dict[str, Start] = {
    "datasets.upload_file": Start(RESEARCHER_A, DATASET_DRAFT | {"file_name": "ds_new_file"}),
    "datasets.put_part": Start(
        RESEARCHER_A, DATASET_DRAFT | {"upload_id": "ds_upload", "part_number": "ds_part"}
    ),
}
# Path arguments of the operations without a body, as in tests/test_api_schemathesis.py.
PINNED = {
    "account_id": "account_a",
    "program_id": "program_p",
    "project_id": "project_a",
    "user_id": "member_a",
    "name": "flavour",
    "proposal_id": "proposal_in_review",
    "allocation_id": "allocation",
    "tranche_id": "tranche",
    "job_id": "job_a",
    "version_id": "ds_draft_id",
    "dataset_id": "ds_dataset_id",
    "concept_id": "ds_concept",
    "public_id": "ds_published_uuid",
    "file_name": "ds_file",
    "upload_id": "ds_upload",
    "vendor_id": "lb_vendor",
    "order_id": "lb_delivered",
    "item_id": "lb_item",
    "tile_path": "tx_tile",
}
QUERY_VALUES = [
    "",
    "x",
    "-1",
    "0",
    "1e999999",
    "9" * 40,
    "true",
    "a\x00b",
    "%ED%A0%80",
    "x" * 10_000,
]


@dataclass(frozen=True)
class Case:
    label: str
    data: bytes
    content_type: str | None
    refused: bool
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Op:
    """One operation of the document; ``url`` is its path with real ids in it."""

    path: str
    method: str
    document: dict[str, Any]
    url: str = ""


@dataclass(frozen=True)
class BadInputWorld(LabellingApiWorld):
    """The world with the path arguments of the file uploads."""

    ds_new_file: str = "notes/new.txt"
    ds_part: int = 1
    tx_tile: str = "0/000"


@dataclass
class Built:
    """What every test of a worker shares, built once: the app, the world and every
    row as built (``rows``)."""

    client: FlaskClient
    session: Session
    world: BadInputWorld
    document: dict[str, Any]
    headers: dict[str, dict[str, str]]
    rows: dict[str, list[Any]]


@dataclass
class Run(Built):
    """One test's view of what is built, with the failures its cases found."""

    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def built(sqlite_engine: Engine) -> Iterator[Built]:
    """One app and one world for the whole module, built once per worker: every request
    runs in a SAVEPOINT that is rolled back (``_send``), so no test sees another's
    writes. Everything is rolled back after the module."""
    settings = load_settings(
        request_max_bytes=REQUEST_MAX_BYTES,
        usage_request_max_bytes=USAGE_REQUEST_MAX_BYTES,
        dataset_max_file_bytes=DATASET_MAX_FILE_BYTES,
        label_studio_webhook_secret=WEBHOOK_SECRET,
        **transparency_settings(),
    )
    with rolled_back_session(sqlite_engine) as session:
        app = create_app(
            settings, session_factory=joined_factory(session), executor=world_executor()
        )
        store = blob_store_for_url(f"memory://bad-input-{uuid.uuid4().hex}")
        app.extensions[STORE_KEY] = store
        world = with_labelling(session, with_datasets(session, build_world(session), store))
        world = BadInputWorld(**{name: getattr(world, name) for name in world.__dataclass_fields__})
        meter = create_token(session, email=f"{OPS}@example.org", actor=SYSTEM, scopes=["meter"])
        with_checkpoint(session)
        session.flush()
        headers = world.headers | {
            METER: {"Authorization": f"Bearer {meter.secret}"},
            LABEL_STUDIO: {"X-Credits-Webhook-Secret": WEBHOOK_SECRET},
        }
        client = app.test_client()
        document = client.get("/api/v1/openapi.json").get_json()
        # A refusal that wrote no watched table is not verified again: it leaves this ledger.
        assert verify_ledger(session).ok
        yield Built(client, session, world, document, headers, _fingerprint(session))


@pytest.fixture
def run(built: Built) -> Iterator[Run]:
    store = built.client.application.extensions[STORE_KEY]
    assert isinstance(store, FsspecBlobStore)
    kept = {key: store.fs.cat_file(store.path(key)) for key in store.list_keys()}
    yield Run(**{name: getattr(built, name) for name in Built.__dataclass_fields__})
    # A request that succeeds writes blobs and upload state, which no SAVEPOINT rolls
    # back: the next test starts from the store as the world left it.
    for key in store.list_keys():
        if key not in kept:
            store.fs.rm_file(store.path(key))
    for key, data in kept.items():
        store.fs.pipe_file(store.path(key), data)


def _operations(document: dict[str, Any]) -> Iterator[Op]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield Op(path, method.upper(), operation)


def _find(run: Run, operation_id: str, arguments: dict[str, str]) -> Op:
    (found,) = [
        op for op in _operations(run.document) if op.document["operationId"] == operation_id
    ]
    url = found.path
    for name, target in arguments.items():
        url = url.replace("{" + name + "}", str(getattr(run.world, target)))
    return Op(found.path, found.method, found.document, url)


def _fingerprint(session: Session) -> dict[str, list[Any]]:
    """Every row of every table but the watched-over ones, in key order."""
    rows: dict[str, list[Any]] = {}
    present = set(inspect(session.connection()).get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name in UNWATCHED_TABLES or table.name not in present:
            continue
        query = select(table).order_by(*table.primary_key.columns)
        rows[table.name] = [tuple(row) for row in session.execute(query)]
    return rows


def _changed(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def _dumps(body: object) -> bytes:
    """JSON text for ``body``; a Raw value anywhere goes in as it is."""
    raws: list[str] = []

    def mark(value: object) -> object:
        if isinstance(value, Raw):
            raws.append(value)
            return f"\x01raw-{len(raws) - 1}\x01"
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    text = json.dumps(mark(body))
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x01raw-{index}\x01"), raw)
    return text.encode("utf-8", errors="surrogatepass")


def _with(body: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    if value is MISSING:
        if isinstance(target, dict):
            target.pop(path[-1], None)
        else:
            del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


class _Schema:
    """The operation's request schema, with the document's components to resolve $refs."""

    def __init__(self, document: dict[str, Any], schema: dict[str, Any]) -> None:
        self.root = schema
        self.components = document["components"]
        self.validator = Draft202012Validator(schema | {"components": self.components})

    def allows(self, body: object) -> bool:
        return bool(self.validator.is_valid(body))

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.components["schemas"][str(schema["$ref"]).rsplit("/", 1)[1]]
        for variant in schema.get("anyOf", []):
            resolved = self.resolve(variant)
            if resolved.get("type") in {"object", "array"}:
                return resolved
        return schema

    def fields(
        self, schema: dict[str, Any], value: object, path: tuple[str | int, ...] = ()
    ) -> Iterator[tuple[str | int, ...]]:
        """Every field the schema names at any depth the base body reaches, present or not;
        the entries of maps and the first item of arrays the body holds."""
        schema = self.resolve(schema)
        for name, child in schema.get("properties", {}).items():
            yield (*path, name)
            if isinstance(value, dict) and name in value:
                yield from self.fields(child, value[name], (*path, name))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and isinstance(value, dict):
            for name, item in value.items():
                yield (*path, name)
                yield from self.fields(extra, item, (*path, name))
        if isinstance(value, list) and value and isinstance(schema.get("items"), dict):
            yield (*path, 0)
            yield from self.fields(schema["items"], value[0], (*path, 0))


def _body_cases(
    schema: _Schema, base: dict[str, Any], *, required: bool, max_bytes: int
) -> Iterator[Case]:
    json_type = "application/json"
    for path in schema.fields(schema.root, base):
        where = ".".join(map(str, path))
        for bad in field_values(max_bytes):
            changed = _with(base, path, bad.value)
            refused = bad.refused or not schema.allows(changed)
            yield Case(f"{where} = {bad.label}", _dumps(changed), json_type, refused)
    extra = base | {"unexpected": 1}
    yield Case("an unknown field", _dumps(extra), json_type, not schema.allows(extra))
    text = _dumps(base)
    malformed = {
        "{not json": b"{not json",
        "an array": b"[]",
        "null": b"null",
        "a string": b'"text"',
        "a number": b"1",
        "nested 5,000 deep": DEEP.encode(),
        "NaN": b'{"x": NaN}',
        "Infinity": b'{"x": -Infinity}',
        "not UTF-8": b'{"x": "\xff"}',
        "a surrogate in UTF-8": b'{"x": "\xed\xa0\x80"}',
        "a byte-order mark": b"\xef\xbb\xbf" + text,
        "two documents": text + b" " + text,
        "cut short": text[:-1],
    }
    for label, data in malformed.items():
        yield Case(f"body: {label}", data, json_type, refused=True)
    wrong_types = {
        "text/plain": "text/plain",
        "none": None,
        "a form": "application/x-www-form-urlencoded",
        "JSON in Latin-1": "application/json; charset=latin-1",
        "XML": "application/xml",
    }
    for label, content_type in wrong_types.items():
        yield Case(f"content type: {label}", text, content_type, refused=True)
    yield Case("over the size limit", text + b" " * max_bytes, json_type, refused=True)
    yield Case("an empty body", b"", json_type, refused=required)
    yield Case("no body at all", b"", None, refused=required)
    yield Case("an empty body sent as text/plain", b"", "text/plain", refused=True)


def _key_cases(text: bytes) -> Iterator[Case]:
    bad_keys = {
        "no Idempotency-Key": None,
        "an empty Idempotency-Key": "",
        "a blank Idempotency-Key": "   ",
        "a 10,000-character Idempotency-Key": "k" * 10_000,
        "a 151-character Idempotency-Key": "k" * 151,
        "a tab in the Idempotency-Key": "a\tb",
        "a non-ASCII Idempotency-Key": "caf\u00e9",
    }
    for label, key in bad_keys.items():
        headers = {} if key is None else {KEY_HEADER: key}
        yield Case(label, text, "application/json", refused=True, headers=headers)


def _query_cases(operation: dict[str, Any]) -> Iterator[Case]:
    names = [p["name"] for p in operation["parameters"] if p["in"] == "query"]
    for name in names:
        for value in QUERY_VALUES:
            query = f"{name}={value if isinstance(value, Raw) else quote(value)}"
            yield Case(f"?{query[:60]}", query.encode(), None, refused="\x00" in value)
    yield Case("an unknown query parameter", b"unexpected=1", None, refused=False)


def _send(run: Run, operation: Op, case: Case, headers: dict[str, str]) -> None:
    """Sends one case in a SAVEPOINT; records what is wrong with its answer."""
    url, data = operation.url, case.data
    if operation.method == "GET" or "requestBody" not in operation.document:
        url, data = f"{url}?{case.data.decode()}", b""
    sent = headers | case.headers
    if case.content_type is not None:
        sent["Content-Type"] = case.content_type
    savepoint = run.session.connection().begin_nested()
    try:
        with _WrittenTables(run.session.connection()) as written:
            response = run.client.open(url, method=operation.method, data=data, headers=sent)
        problems = _judge(operation, case, response)
        # The app shares this connection, so it saw every statement: a refusal that
        # wrote no watched table left every table as it was, and the ledger too.
        if response.status_code >= 400 and written.any_watched():
            problems += _state_problems(run)
    finally:
        savepoint.rollback()
    label = f"{operation.method} {operation.path} [{case.label}]"
    run.failures.extend(f"{label}: {problem}" for problem in problems)


def _judge(operation: Op, case: Case, response: TestResponse) -> list[str]:
    status = response.status_code
    problems = []
    if status >= 500:
        problems.append(f"server error {status}: {response.get_data(as_text=True)[:300]}")
    if str(status) not in operation.document["responses"]:
        problems.append(f"status {status} is not documented")
    if case.refused and status < 400:
        problems.append(f"accepted ({status}) although it breaks the schema or a body rule")
    if status >= 400:
        if response.mimetype != PROBLEM_MEDIA_TYPE:
            problems.append(f"refusal {status} is {response.mimetype}, not a problem document")
        else:
            Problem.model_validate(response.get_json())
    return problems


class _WrittenTables:
    """The tables that statements on ``connection`` wrote rows to while in the block.

    Every INSERT, UPDATE or DELETE counts, even one that matched no row; a statement
    it cannot name a table for (textual SQL, anything but a read or a savepoint)
    counts as writing every table.
    """

    _HARMLESS_VERBS = frozenset({"SELECT", "SAVEPOINT", "RELEASE", "ROLLBACK", "PRAGMA"})

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.tables: set[str] = set()
        self.unknown = False

    def __enter__(self) -> _WrittenTables:
        event.listen(self.connection, "after_cursor_execute", self._seen)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.connection, "after_cursor_execute", self._seen)

    def any_watched(self) -> bool:
        return self.unknown or bool(self.tables - UNWATCHED_TABLES)

    def _seen(
        self, _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if context.isinsert or context.isupdate or context.isdelete:
            table = getattr(getattr(context.compiled, "statement", None), "table", None)
            name = getattr(table, "name", None)
            if not isinstance(name, str):
                self.unknown = True
            else:  # counted whatever rowcount says: with RETURNING it is 0 until read
                self.tables.add(name)
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb not in self._HARMLESS_VERBS:
            self.unknown = True


def _state_problems(run: Run) -> list[str]:
    problems = []
    changed = [name for name, rows in _fingerprint(run.session).items() if run.rows[name] != rows]
    if changed:
        problems.append(f"refused, yet it changed {', '.join(changed)}")
    report = verify_ledger(run.session)
    if not report.ok:
        problems.append(f"refused, yet the ledger does not verify: {report.problems}")
    return problems


def _report(run: Run) -> str:
    shown = "\n".join(run.failures[:60])
    more = len(run.failures) - 60
    return f"{len(run.failures)} failure(s):\n{shown}" + (
        f"\n… and {more} more" if more > 0 else ""
    )


def _body_types(operation: Op) -> set[str]:
    return set(operation.document.get("requestBody", {}).get("content", {}))


def test_every_json_operation_has_a_request_that_succeeds(run: Run) -> None:
    json_operations = {
        operation.document["operationId"]
        for operation in _operations(run.document)
        if "application/json" in _body_types(operation)
    }
    assert json_operations == set(STARTS)
    file_operations = {
        operation.document["operationId"]
        for operation in _operations(run.document)
        if _body_types(operation) - {"application/json"}
    }
    assert file_operations == set(FILE_STARTS)


@pytest.mark.parametrize("operation_id", sorted(STARTS))
def test_bad_bodies_are_refused_as_problems_and_change_nothing(run: Run, operation_id: str) -> None:
    start = STARTS[operation_id]
    operation = _find(run, operation_id, start.path)
    keyed = any(p["name"] == KEY_HEADER for p in operation.document["parameters"])
    headers = run.headers[start.persona] | ({KEY_HEADER: "bad-input"} if keyed else {})
    base = start.body(run.world)
    request_body = operation.document["requestBody"]
    schema = _Schema(run.document, request_body["content"]["application/json"]["schema"])
    assert schema.allows(base), "the starting body breaks its own schema"
    savepoint = run.session.connection().begin_nested()
    try:
        response = run.client.open(
            operation.url, method=operation.method, json=base, headers=headers
        )
    finally:
        savepoint.rollback()
    assert response.status_code < 300, response.get_json()
    max_bytes = USAGE_REQUEST_MAX_BYTES if operation_id == USAGE_OPERATION else REQUEST_MAX_BYTES

    cases = _body_cases(schema, base, required=request_body["required"], max_bytes=max_bytes)
    for case in cases:
        _send(run, operation, case, headers)
    if keyed:
        for case in _key_cases(_dumps(base)):
            _send(run, operation, case, run.headers[start.persona])

    assert not run.failures, _report(run)


def test_bad_query_values_are_refused_as_problems_and_change_nothing(run: Run) -> None:
    operations = [op for op in _operations(run.document) if "requestBody" not in op.document]
    assert operations
    for found in operations:
        arguments = {
            p["name"]: PINNED[p["name"]] for p in found.document["parameters"] if p["in"] == "path"
        }
        operation = _find(run, found.document["operationId"], arguments)
        for case in _query_cases(operation.document):
            _send(run, operation, case, run.headers[OPS])

    assert not run.failures, _report(run)


BAD_FILE_NAMES = {
    "a traversal": "..%2F..%2Fetc%2Fpasswd",
    "a dot-dot folder": "a/../b",
    "a 10,000-character name": "x" * 10_000,
    "a bidi override": "evil%E2%80%AEvsc.txt",
    "a control character": "a%09b",
    "a NUL": "a%00b",
    "a name the draft holds": "DATA/cores.csv",
}


def _file_cases(operation_id: str, max_bytes: int) -> Iterator[tuple[str, Case]]:
    """(path suffix to replace the name with, or "", case) for a file body."""
    octets = "application/octet-stream"
    yield "", Case("over the size limit", b"x" * (max_bytes + 1), octets, refused=True)
    yield "", Case("sent as JSON", b'{"a": 1}', "application/json", refused=False)
    yield "", Case("no content type", b"abc", None, refused=False)
    yield "", Case("empty", b"", octets, refused=False)
    if operation_id == "datasets.upload_file":
        for label, name in BAD_FILE_NAMES.items():
            yield name, Case(f"file name: {label}", b"abc", octets, refused=True)


def _stored(run: Run) -> list[str]:
    store = run.client.application.extensions[STORE_KEY]
    assert isinstance(store, FsspecBlobStore)
    return [key for key in store.list_keys() if not key.startswith("uploads/")]


@pytest.mark.parametrize("operation_id", sorted(FILE_STARTS))
def test_bad_file_bodies_and_names_are_refused_and_store_nothing(
    run: Run, operation_id: str
) -> None:
    start = FILE_STARTS[operation_id]
    operation = _find(run, operation_id, start.path)
    headers = run.headers[start.persona]
    savepoint = run.session.connection().begin_nested()
    try:
        response = run.client.open(
            operation.url,
            method=operation.method,
            data=UPLOAD_BYTES,
            headers=headers | {"Content-Type": "application/octet-stream"},
        )
    finally:
        savepoint.rollback()
    assert response.status_code < 300, response.get_json()
    limit = DATASET_MAX_FILE_BYTES if operation_id == "datasets.upload_file" else PART_SIZE
    stored = _stored(run)
    for name, case in _file_cases(operation_id, limit):
        url = operation.url
        if name:
            url = url.removesuffix(run.world.ds_new_file) + name
        _send(run, Op(operation.path, operation.method, operation.document, url), case, headers)
        if case.refused:
            assert _stored(run) == stored, f"{case.label}: refused, yet a blob was stored"
        stored = _stored(run)

    assert not run.failures, _report(run)
