"""The Label Studio adapter against a real Label Studio server (slow; CI runs it).

One server per session (``label-studio start`` from CREDITS_TEST_LABEL_STUDIO_BIN,
see label_studio_server.py). Each test makes its own project from a schema's
generated config, imports tasks, annotates them through Label Studio's own API
as an annotator's submit does, and reads them back through the client. The last
takes an order through the platform's sweep: placed with a hold, its project and
tasks made in Label Studio, annotated there by two users, collected, exported,
accepted and settled to the micro-credit.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import missing_service
from label_studio_server import (
    BIN_ENV,
    SHARED_ENV,
    LabelStudioServer,
    LabelStudioServerUnavailable,
    log_tail,
    running_label_studio,
    shared_label_studio,
)
from labelling_world import SENTIMENT, build_world
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.errors import InvalidInput
from credits.labelling import orders
from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind, Span
from credits.labelling.label_studio import (
    LabelStudioClient,
    LabelStudioRefused,
    NewTask,
)
from credits.labelling.label_studio_format import (
    label_config,
    parse_webhook,
    verify_webhook,
)
from credits.labelling.label_studio_loop import sweep_label_studio
from credits.labelling.models import MICRO, Adapter, Annotation, Item, Order, OrderStatus, PriceUnit
from credits.labelling.pricing import Price, cost
from credits.ledger.queries import get_hold
from credits.ledger.verify import verify_ledger

# One Label Studio serves the module: on parallel workers, every test here runs on one
# (scripts/test distributes with --dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("label-studio")]

TEXT = "Ada Lovelace wrote to Babbage & co <at> the Royal Society."
TRICKY = ["positive & sure", "<negative>", 'say "meh"']


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A real Label Studio for the whole session, with its own data folder and token.

    Outside CI an unset CREDITS_TEST_LABEL_STUDIO_BIN or a server that does not start
    skips the suite with the reason; in CI it fails it, never skips.
    """
    if shared := os.environ.get(SHARED_ENV):
        try:
            yield shared_label_studio(Path(shared))
        except LabelStudioServerUnavailable as error:
            missing_service(f"the shared Label Studio test server did not start: {error}")
        return
    binary = os.environ.get(BIN_ENV)
    if not binary:
        missing_service(
            f"{BIN_ENV} is not set: CI installs Label Studio with scripts/lib/label_studio.sh "
            "and runs the real-server suite"
        )
    try:
        with running_label_studio(Path(binary), tmp_path_factory.mktemp("label-studio")) as server:
            yield server
    except LabelStudioServerUnavailable as error:
        missing_service(f"the Label Studio test server did not start: {error}")


@pytest.fixture
def client(label_studio_server: LabelStudioServer) -> Iterator[LabelStudioClient]:
    client = LabelStudioClient(label_studio_server.url, label_studio_server.token, timeout_s=60)
    yield client
    client.http.close()


def _choices(*labels: str) -> list[dict[str, Any]]:
    value = {"choices": list(labels)}
    return [{"from_name": "label", "to_name": "item", "type": "choices", "value": value}]


def _spans(text: str, *spans: Span) -> list[dict[str, Any]]:
    return [
        {
            "from_name": "label",
            "to_name": "item",
            "type": "labels",
            "value": {
                "start": span.start,
                "end": span.end,
                "text": text[span.start : span.end],
                "labels": [span.label],
            },
        }
        for span in spans
    ]


CASES = [
    pytest.param(
        LabelSchema(kind=SchemaKind.SINGLE_LABEL, labels=TRICKY),
        ["great", "awful"],
        [AnnotationValue(labels=["<negative>"]), AnnotationValue(labels=["positive & sure"])],
        id="single_label",
    ),
    pytest.param(
        LabelSchema(kind=SchemaKind.MULTI_LABEL, labels=["sport", "politics", "science"]),
        ["match report", "nothing much"],
        [AnnotationValue(labels=["sport", "science"]), AnnotationValue(labels=[])],
        id="multi_label",
    ),
    pytest.param(
        LabelSchema(kind=SchemaKind.TEXT_SPANS, labels=["PER", "ORG"]),
        [TEXT, "no names here"],
        [
            AnnotationValue(
                spans=[
                    Span(start=0, end=12, label="PER"),
                    Span(start=22, end=29, label="PER"),
                    Span(start=44, end=57, label="ORG"),
                ]
            ),
            AnnotationValue(spans=[]),
        ],
        id="text_spans",
    ),
    pytest.param(
        LabelSchema(kind=SchemaKind.IMAGE_CLASSIFICATION, labels=["cat", "dog"]),
        ["https://images.example.org/1.png", "https://images.example.org/2.png"],
        [AnnotationValue(labels=["dog"]), AnnotationValue(labels=["cat"])],
        id="image_classification",
    ),
]


@pytest.mark.parametrize(("schema", "contents", "values"), CASES)
def test_round_trip_through_a_real_label_studio(
    client: LabelStudioClient,
    schema: LabelSchema,
    contents: list[str],
    values: list[AnnotationValue],
) -> None:
    project = client.create_project(
        title=f"credits {schema.kind.value}", description="a test order", schema=schema
    )
    refs = [f"item-{n}" for n in range(len(contents))] + ["unannotated"]
    imported = client.import_tasks(
        project.id,
        schema,
        [
            NewTask(ref, content)
            for ref, content in zip(refs, [*contents, contents[0]], strict=True)
        ],
    )
    assert imported.count == len(refs)
    assert imported.task_ids is not None
    assert client.task_ids_by_item(project.id) == dict(zip(refs, imported.task_ids, strict=True))
    created = []
    for task_id, content, value in zip(imported.task_ids, contents, values, strict=False):
        result = _spans(content, *value.spans) if value.spans else _choices(*value.labels)
        if not value.spans and not value.labels:
            result = []  # an answer that applies no label
        created.append(client.create_annotation(task_id, result, lead_time_s=2.5))

    listed = list(client.completed_annotations(project.id, schema))
    exported = client.export(project.id, schema)

    assert sorted(a.annotation_id for a in listed) == sorted(created)
    by_item = {a.item_ref: a for a in listed}
    assert set(by_item) == set(refs[: len(contents)])
    for ref, value in zip(refs, values, strict=False):
        assert by_item[ref].value == value, ref
        assert by_item[ref].annotator_ref.startswith("label-studio:")
        assert by_item[ref].lead_time_seconds == 2.5
        assert by_item[ref].created_at is not None
    assert sorted(exported, key=lambda a: a.annotation_id) == sorted(
        listed, key=lambda a: a.annotation_id
    )
    client.delete_project(project.id)


def test_label_studio_keeps_the_generated_config_and_its_escaped_labels(
    client: LabelStudioClient, label_studio_server: LabelStudioServer
) -> None:
    schema = LabelSchema(kind=SchemaKind.SINGLE_LABEL, labels=TRICKY)
    project = client.create_project(title="config", description="", schema=schema)

    answer = client.http.get(
        f"{label_studio_server.url}/api/projects/{project.id}/",
        headers={"Authorization": f"Token {label_studio_server.token}"},
        timeout=30,
    )

    assert answer.status_code == 200
    assert answer.json()["label_config"] == label_config(schema)
    client.delete_project(project.id)


def test_skipped_and_out_of_schema_annotations(
    client: LabelStudioClient, label_studio_server: LabelStudioServer
) -> None:
    schema = LabelSchema(kind=SchemaKind.SINGLE_LABEL, labels=["yes", "no"])
    project = client.create_project(title="skips", description="", schema=schema)
    imported = client.import_tasks(project.id, schema, [NewTask("a", "one"), NewTask("b", "two")])
    assert imported.task_ids is not None
    skipped = client.http.post(
        f"{client.url}/api/tasks/{imported.task_ids[0]}/annotations/",
        json={"result": [], "was_cancelled": True},
        headers={"Authorization": f"Token {label_studio_server.token}"},
        timeout=30,
    )
    assert skipped.status_code == 201
    assert list(client.completed_annotations(project.id, schema)) == []
    # Label Studio takes a choice its config does not have; the adapter refuses it.
    odd = client.create_annotation(imported.task_ids[1], _choices("maybe"))

    with pytest.raises(InvalidInput, match=f"annotation {odd}: unknown label"):
        client.export(project.id, schema)
    client.delete_project(project.id)


def test_a_wrong_token_is_refused_with_label_studios_message(
    label_studio_server: LabelStudioServer,
) -> None:
    client = LabelStudioClient(label_studio_server.url, "not-a-token-at-all", timeout_s=30)
    schema = LabelSchema(kind=SchemaKind.SINGLE_LABEL, labels=["yes", "no"])

    with pytest.raises(LabelStudioRefused, match="HTTP 401: Invalid token"):
        client.create_project(title="nope", description="", schema=schema)


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True
    received: queue.Queue[tuple[dict[str, str], Any]]


class _Hook(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.put((dict(self.headers.items()), json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _Hook)
    server.received = queue.Queue()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_webhook_brings_the_annotation_with_the_shared_secret(
    client: LabelStudioClient, receiver: _Receiver
) -> None:
    schema = LabelSchema(kind=SchemaKind.TEXT_SPANS, labels=["PER", "ORG"])
    project = client.create_project(title="webhooks", description="", schema=schema)
    imported = client.import_tasks(project.id, schema, [NewTask("w1", TEXT)])
    assert imported.task_ids is not None
    port = receiver.server_address[1]
    client.create_webhook(project.id, url=f"http://127.0.0.1:{port}/hook", secret="hook-secret")
    span = Span(start=0, end=12, label="PER")

    annotation_id = client.create_annotation(imported.task_ids[0], _spans(TEXT, span))

    headers, payload = receiver.received.get(timeout=30)
    assert verify_webhook(headers, "hook-secret")
    assert not verify_webhook(headers, "another-secret")
    event = parse_webhook(schema, payload)
    assert event.action == "ANNOTATION_CREATED"
    assert event.project_id == project.id
    assert event.annotation is not None
    assert event.annotation.annotation_id == annotation_id
    assert event.annotation.item_ref == "w1"
    assert event.annotation.value == AnnotationValue(spans=[span])
    client.delete_project(project.id)


# -- the whole round trip through the platform's sweep -----------------------------------

PRICE = 333_333  # micro-credits per submission, so that the fee rounds on every capture
FEE_BASIS_POINTS = 250


def _annotator(server: LabelStudioServer, email: str) -> LabelStudioClient:
    """A Label Studio user who signed up through the organisation's invite link, as a
    hired annotator does, acting with their own API token."""
    admin = {"Authorization": f"Token {server.token}"}
    invite = requests.get(f"{server.url}/api/invite", headers=admin, timeout=30)
    assert invite.status_code == 200, invite.text
    browser = requests.Session()
    form = browser.get(server.url + invite.json()["invite_url"], timeout=30)
    signed_up = browser.post(
        form.url,
        data={
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            "email": email,
            "password": secrets.token_hex(12),
        },
        headers={"Referer": form.url},
        allow_redirects=False,
        timeout=30,
    )
    assert signed_up.status_code == 302, signed_up.text[:500]
    return LabelStudioClient(server.url, _fresh_token(server, browser), timeout_s=60)


def _fresh_token(server: LabelStudioServer, browser: requests.Session) -> str:
    """The signed-in user's new API token.

    Reset rather than read: a new user's legacy token is sometimes not made yet, and
    reading it then fails. The reset itself has answered 500 on a CI run where every test
    worker shared one busy server (Label Studio keeps its data in SQLite), so a server
    error is tried again a few times; the last one fails with the server's log.
    """
    answer: requests.Response | None = None
    for attempt in range(6):
        answer = browser.post(
            f"{server.url}/api/current-user/reset-token",
            headers={
                "X-CSRFToken": browser.cookies.get("csrftoken", ""),
                "Referer": server.url + "/",
            },
            timeout=30,
        )
        if answer.status_code < 500:
            break
        time.sleep(0.5 * 2**attempt)
    assert answer is not None
    assert answer.status_code in (200, 201), (
        f"reset-token answered HTTP {answer.status_code}; server log: {log_tail(server)}"
    )
    return str(answer.json()["token"])


def test_an_order_goes_through_label_studio_and_settles_per_annotation(
    label_studio_server: LabelStudioServer,
    client: LabelStudioClient,
    session: Session,
    joined_session_factory: sessionmaker[Session],
) -> None:
    world = build_world(session)
    vendor = world.add_vendor(
        session,
        "Label Studio",
        adapter=Adapter.LABEL_STUDIO,
        unit=PriceUnit.SUBMISSION,
        price=PRICE,
        fee_basis_points=FEE_BASIS_POINTS,
    )
    before = world.available(session)
    order = world.placed(session, vendor_id=vendor.id, items=3, redundancy=2)
    session.flush()
    quote = cost(6 * MICRO, Price(PriceUnit.SUBMISSION, PRICE, FEE_BASIS_POINTS))
    assert order.quoted_micro == quote == 2_049_998
    assert world.available(session) == before - quote

    placed = sweep_label_studio(joined_session_factory, client)

    assert placed.failed == {}
    assert placed.placed == {order.id: 3}
    session.expire_all()
    stored = session.get_one(Order, order.id)
    project_id = int(stored.external_ref or 0)
    project = requests.get(
        f"{label_studio_server.url}/api/projects/{project_id}/",
        headers={"Authorization": f"Token {label_studio_server.token}"},
        timeout=30,
    ).json()
    assert (project["maximum_annotations"], project["overlap_cohort_percentage"]) == (2, 100)
    items = list(
        session.scalars(select(Item).where(Item.order_id == order.id).order_by(Item.position))
    )
    tasks = {task["id"]: task for task in client.tasks(project_id)}
    assert sorted(tasks) == sorted(int(item.external_ref or 0) for item in items)
    assert {t["data"]["credits_item"] for t in tasks.values()} == {str(i.id) for i in items}
    tag = secrets.token_hex(4)
    ada, grace = (
        _annotator(label_studio_server, f"{name}-{tag}@annotators.example")
        for name in ("ada", "grace")
    )
    answers = {ada: ["positive", "negative", "neutral"], grace: ["positive", "negative"]}
    made = [
        who.create_annotation(int(item.external_ref or 0), _choices(label), lead_time_s=4.0)
        for who, labels in answers.items()
        for item, label in zip(items, labels, strict=False)
    ]

    collected = sweep_label_studio(joined_session_factory, client)
    again = sweep_label_studio(joined_session_factory, client)

    assert collected.recorded == {order.id: 5}
    assert collected.failed == {} == collected.skipped
    assert again.recorded == {order.id: 0}
    rows = list(session.scalars(select(Annotation).where(Annotation.order_id == order.id)))
    assert sorted(int(r.delivery_key.removeprefix("label-studio:")) for r in rows) == sorted(made)
    assert len({r.annotator_ref for r in rows}) == 2
    exported = client.export(project_id, SENTIMENT)
    assert sorted((a.annotation_id, a.item_ref, a.value.labels[0]) for a in exported) == sorted(
        (
            int(r.delivery_key.removeprefix("label-studio:")),
            str(r.item_id),
            r.value["labels"][0],
        )
        for r in rows
    )
    # Each annotation captured its own part of the fee-bearing price, rounded once overall.
    captured = cost(5 * MICRO, Price(PriceUnit.SUBMISSION, PRICE, FEE_BASIS_POINTS))
    assert captured == 1_708_332
    assert sorted(r.captured_micro for r in rows) == [341_666, 341_666, 341_666, 341_667, 341_667]
    assert sum(r.captured_micro for r in rows) == captured

    settled = orders.accept_order(session, order_id=order.id, actor=world.pi)

    assert settled.status is OrderStatus.SETTLED
    hold = get_hold(session, hold_key=stored.hold_key or "")
    assert (hold.amount, hold.captured) == (quote, captured)
    assert sum(part.voided for part in hold.parts) == quote - captured == 341_666
    assert world.available(session) == before - captured
    assert verify_ledger(session).ok
    client.delete_project(project_id)
