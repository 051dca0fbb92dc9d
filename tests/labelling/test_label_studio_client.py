"""The Label Studio adapter against a local stub of its REST API, and its pure parts:
the generated label configs, annotation and webhook parsing, the webhook secret."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from label_studio_stub import (
    PERSONAL_TOKEN,
    TOKEN,
    USER_ID,
    Fault,
    LabelStudioStub,
    running_label_studio_stub,
)
from pydantic import SecretStr

from credits.errors import CreditsError, InvalidInput
from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind, Span
from credits.labelling.label_studio import (
    IMPORT_BATCH,
    LabelStudioClient,
    LabelStudioRefused,
    LabelStudioUnavailable,
    NewTask,
    label_studio_client_from_settings,
)
from credits.labelling.label_studio_format import (
    WEBHOOK_SECRET_HEADER,
    label_config,
    parse_annotation,
    parse_webhook,
    task_data,
    verify_webhook,
)
from credits.settings import load_settings

SENTIMENT = LabelSchema(kind=SchemaKind.SINGLE_LABEL, labels=["positive", "negative"])
TOPICS = LabelSchema(kind=SchemaKind.MULTI_LABEL, labels=["sport", "politics", "science"])
ENTITIES = LabelSchema(kind=SchemaKind.TEXT_SPANS, labels=["PER", "ORG"])
ANIMALS = LabelSchema(kind=SchemaKind.IMAGE_CLASSIFICATION, labels=["cat", "dog"])
TRICKY = ["a & b", "<tag>", 'say "hi"', "it's", "x]]>y"]


@pytest.fixture
def stub() -> Iterator[LabelStudioStub]:
    with running_label_studio_stub() as running:
        yield running


@pytest.fixture
def client(stub: LabelStudioStub) -> LabelStudioClient:
    return LabelStudioClient(stub.url, TOKEN, timeout_s=2.0)


def _choices(*labels: str) -> list[dict[str, Any]]:
    value = {"choices": list(labels)}
    return [{"from_name": "label", "to_name": "item", "type": "choices", "value": value}]


def _spans(*spans: tuple[int, int, str]) -> list[dict[str, Any]]:
    return [
        {
            "from_name": "label",
            "to_name": "item",
            "type": "labels",
            "value": {"start": start, "end": end, "labels": [label]},
        }
        for start, end, label in spans
    ]


# -- label configs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "object_tag", "control_tag", "choice"),
    [
        (SENTIMENT, "Text", "Choices", "single"),
        (TOPICS, "Text", "Choices", "multiple"),
        (ENTITIES, "Text", "Labels", None),
        (ANIMALS, "Image", "Choices", "single"),
    ],
)
def test_label_config_has_one_object_and_one_control_per_kind(
    schema: LabelSchema, object_tag: str, control_tag: str, choice: str | None
) -> None:
    view = ET.fromstring(label_config(schema))  # noqa: S314 - our own XML

    assert view.tag == "View"
    (item,) = view.findall(object_tag)
    (control,) = view.findall(control_tag)
    assert item.get("name") == "item"
    assert item.get("value") == ("$image" if schema.is_image else "$text")
    assert control.get("name") == "label"
    assert control.get("toName") == "item"
    assert control.get("choice") == choice
    options = [option.get("value") for option in control]
    assert options == schema.labels
    assert {option.tag for option in control} == {"Label" if control_tag == "Labels" else "Choice"}


def test_a_multi_label_answer_may_be_empty_and_a_classification_is_required() -> None:
    topics = ET.fromstring(label_config(TOPICS)).find("Choices")  # noqa: S314
    sentiment = ET.fromstring(label_config(SENTIMENT)).find("Choices")  # noqa: S314

    assert topics is not None and topics.get("required") == "false"
    assert sentiment is not None and sentiment.get("required") == "true"


@pytest.mark.parametrize("kind", [SchemaKind.SINGLE_LABEL, SchemaKind.TEXT_SPANS])
def test_labels_are_xml_escaped_and_read_back_unchanged(kind: SchemaKind) -> None:
    schema = LabelSchema(kind=kind, labels=TRICKY)

    config = label_config(schema)

    assert "<tag>" not in config
    assert "a & b" not in config
    values = [
        element.get("value")
        for element in ET.fromstring(config).iter()  # noqa: S314 - our own XML
        if element.tag in {"Choice", "Label"}
    ]
    assert values == TRICKY


def test_task_data_carries_the_item_reference_and_its_text_or_image() -> None:
    assert task_data(SENTIMENT, item_ref="41", content="great") == {
        "text": "great",
        "credits_item": "41",
    }
    assert task_data(ANIMALS, item_ref="42", content="https://x.example/cat.png") == {
        "image": "https://x.example/cat.png",
        "credits_item": "42",
    }


# -- the client against the stub -------------------------------------------------------


def test_round_trip_create_import_annotate_list_and_export(
    stub: LabelStudioStub, client: LabelStudioClient
) -> None:
    project = client.create_project(title="Order 12", description="sentiment", schema=SENTIMENT)
    imported = client.import_tasks(
        project.id, SENTIMENT, [NewTask("101", "I love it"), NewTask("102", "awful")]
    )
    assert imported.count == 2
    assert imported.task_ids is not None
    first, second = imported.task_ids
    client.create_annotation(first, _choices("positive"), lead_time_s=4.25)
    client.create_annotation(second, _choices("negative"))

    listed = list(client.completed_annotations(project.id, SENTIMENT))
    exported = client.export(project.id, SENTIMENT)

    assert stub.projects[project.id]["label_config"] == label_config(SENTIMENT)
    assert [(a.item_ref, a.value.labels) for a in listed] == [
        ("101", ["positive"]),
        ("102", ["negative"]),
    ]
    assert listed == exported
    assert listed[0].task_id == first
    assert listed[0].annotator_ref == f"label-studio:{USER_ID}"
    assert listed[0].lead_time_seconds == 4.25
    assert listed[1].lead_time_seconds is None
    assert listed[0].created_at is not None and listed[0].created_at.tzinfo is not None
    assert client.task_ids_by_item(project.id) == {"101": first, "102": second}
    assert all(call.authorization == f"Token {TOKEN}" for call in stub.calls)


def test_tasks_are_read_page_by_page_until_the_total(
    stub: LabelStudioStub, client: LabelStudioClient
) -> None:
    project = client.create_project(title="paged", description="", schema=TOPICS)
    imported = client.import_tasks(
        project.id, TOPICS, [NewTask(str(n), f"text {n}") for n in range(7)]
    )
    assert imported.task_ids is not None
    for task_id in imported.task_ids[::2]:
        client.create_annotation(task_id, _choices("science", "sport"))

    tasks = list(client.tasks(project.id, page_size=3))
    annotations = list(client.completed_annotations(project.id, TOPICS))

    assert [task["data"]["credits_item"] for task in tasks] == [str(n) for n in range(7)]
    pages = [call.query["page"] for call in stub.calls_to("GET", "/api/tasks")][:3]
    assert pages == [["1"], ["2"], ["3"]]
    assert all(call.status == 200 for call in stub.calls_to("GET", "/api/tasks"))
    assert [a.item_ref for a in annotations] == ["0", "2", "4", "6"]
    assert annotations[0].value.labels == ["sport", "science"]  # the schema's order


def test_large_imports_go_in_batches(stub: LabelStudioStub, client: LabelStudioClient) -> None:
    project = client.create_project(title="batches", description="", schema=SENTIMENT)

    imported = client.import_tasks(
        project.id, SENTIMENT, [NewTask(str(n), "t") for n in range(IMPORT_BATCH + 1)]
    )

    assert imported.count == IMPORT_BATCH + 1
    assert imported.task_ids is not None and len(set(imported.task_ids)) == IMPORT_BATCH + 1
    assert [len(c.body) for c in stub.calls_to("POST", "/api/projects/1/import")] == [
        IMPORT_BATCH,
        1,
    ]


def test_skipped_tasks_are_not_completed_annotations(client: LabelStudioClient) -> None:
    project = client.create_project(title="skips", description="", schema=SENTIMENT)
    imported = client.import_tasks(project.id, SENTIMENT, [NewTask("1", "a"), NewTask("2", "b")])
    assert imported.task_ids is not None
    client.http.post(
        f"{client.url}/api/tasks/{imported.task_ids[0]}/annotations/",
        json={"result": [], "was_cancelled": True},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=2,
    )
    client.create_annotation(imported.task_ids[1], _choices("negative"))

    assert [a.item_ref for a in client.completed_annotations(project.id, SENTIMENT)] == ["2"]
    assert [a.item_ref for a in client.export(project.id, SENTIMENT)] == ["2"]


def test_spans_and_images_round_trip(client: LabelStudioClient) -> None:
    spans = client.create_project(title="entities", description="", schema=ENTITIES)
    images = client.create_project(title="images", description="", schema=ANIMALS)
    text_task = client.import_tasks(spans.id, ENTITIES, [NewTask("7", "Ada Lovelace met IBM")])
    image_task = client.import_tasks(images.id, ANIMALS, [NewTask("8", "https://x.example/c.png")])
    assert text_task.task_ids is not None and image_task.task_ids is not None
    client.create_annotation(text_task.task_ids[0], _spans((17, 20, "ORG"), (0, 12, "PER")))
    client.create_annotation(image_task.task_ids[0], _choices("cat"))

    (entity,) = client.export(spans.id, ENTITIES)
    (animal,) = client.completed_annotations(images.id, ANIMALS)

    assert entity.value == AnnotationValue(
        spans=[Span(start=0, end=12, label="PER"), Span(start=17, end=20, label="ORG")]
    )
    assert animal.value == AnnotationValue(labels=["cat"])


def test_an_annotation_outside_the_schema_is_refused_naming_it(client: LabelStudioClient) -> None:
    project = client.create_project(title="unknown", description="", schema=SENTIMENT)
    imported = client.import_tasks(project.id, SENTIMENT, [NewTask("1", "meh")])
    assert imported.task_ids is not None
    annotation_id = client.create_annotation(imported.task_ids[0], _choices("neutral"))

    with pytest.raises(InvalidInput, match=f"annotation {annotation_id}: unknown label") as raised:
        list(client.completed_annotations(project.id, SENTIMENT))
    assert raised.value.extra["annotation_id"] == annotation_id


def test_a_wrong_token_is_refused_with_label_studios_message(stub: LabelStudioStub) -> None:
    client = LabelStudioClient(stub.url, "not-the-token", timeout_s=2.0)

    with pytest.raises(LabelStudioRefused, match="HTTP 401: Invalid token") as raised:
        client.create_project(title="nope", description="", schema=SENTIMENT)

    assert raised.value.status == 502
    assert raised.value.slug == "label-studio-refused"
    assert raised.value.extra["label_studio_status"] == 401


def test_validation_errors_name_the_field(client: LabelStudioClient) -> None:
    with pytest.raises(LabelStudioRefused, match="HTTP 400: title: Ensure this field"):
        client.create_project(title="ab", description="", schema=SENTIMENT)


def test_a_missing_project_is_refused_and_deleting_it_is_fine(client: LabelStudioClient) -> None:
    project = client.create_project(title="short-lived", description="", schema=SENTIMENT)
    client.delete_project(project.id)
    client.delete_project(project.id)

    with pytest.raises(LabelStudioRefused, match="HTTP 404: No Project matches"):
        list(client.tasks(project.id))


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=500, detail="Server error"),
        Fault(status=503, html=True),
        Fault(delay_s=3.0),
    ],
    ids=["500", "503-html", "timeout"],
)
def test_outages_and_timeouts_are_a_domain_error_not_a_traceback(
    stub: LabelStudioStub, fault: Fault
) -> None:
    client = LabelStudioClient(stub.url, TOKEN, timeout_s=1.0)
    stub.fail_next(fault)

    with pytest.raises(LabelStudioUnavailable) as raised:
        client.create_project(title="outage", description="", schema=SENTIMENT)

    assert isinstance(raised.value, CreditsError)
    assert raised.value.status == 502
    assert raised.value.slug == "label-studio-unavailable"
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__


def test_an_unreachable_server_is_unavailable() -> None:
    client = LabelStudioClient("http://127.0.0.1:9", TOKEN, timeout_s=1.0)

    with pytest.raises(LabelStudioUnavailable, match="did not answer to list tasks"):
        list(client.tasks(1))


def test_a_non_json_success_is_unavailable(
    stub: LabelStudioStub, client: LabelStudioClient
) -> None:
    stub.fail_next(Fault(status=200, html=True))

    with pytest.raises(LabelStudioUnavailable, match="not JSON"):
        client.create_project(title="html", description="", schema=SENTIMENT)


def test_a_personal_access_token_is_exchanged_and_refreshed_when_it_expires(
    stub: LabelStudioStub,
) -> None:
    client = LabelStudioClient(stub.url, PERSONAL_TOKEN, timeout_s=2.0)
    client.create_project(title="jwt one", description="", schema=SENTIMENT)
    stub.expire_access_tokens()

    client.create_project(title="jwt two", description="", schema=SENTIMENT)

    assert len(stub.calls_to("POST", "/api/token/refresh")) == 2
    created = stub.calls_to("POST", "/api/projects")
    assert [call.status for call in created] == [201, 401, 201]
    assert all((call.authorization or "").startswith("Bearer ") for call in created)


def test_a_refused_personal_access_token_is_refused(stub: LabelStudioStub) -> None:
    client = LabelStudioClient(stub.url, "a.b.c", timeout_s=2.0)

    with pytest.raises(LabelStudioRefused, match="personal access token: HTTP 401"):
        client.create_project(title="jwt", description="", schema=SENTIMENT)


def test_a_webhook_is_registered_with_the_secret_header(
    stub: LabelStudioStub, client: LabelStudioClient
) -> None:
    project = client.create_project(title="hooks", description="", schema=SENTIMENT)

    webhook_id = client.create_webhook(project.id, url="https://credits.example/hook", secret="s3")

    registered = stub.webhooks[webhook_id]
    assert registered["headers"] == {WEBHOOK_SECRET_HEADER: "s3"}
    assert registered["actions"] == ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]
    assert registered["project"] == project.id


# -- parsing ---------------------------------------------------------------------------


def _annotation(**changes: Any) -> dict[str, Any]:
    return {
        "id": 31,
        "result": _choices("negative"),
        "completed_by": 5,
        "was_cancelled": False,
        "created_at": "2026-01-02T03:04:05.123456Z",
        "lead_time": 12,
        "task": 9,
        **changes,
    }


TASK = {"id": 9, "data": {"text": "so bad", "credits_item": "77"}}


def test_an_export_user_object_gives_only_the_user_id() -> None:
    user = {"id": 5, "email": "annotator@uni.example", "first_name": "Ann"}

    parsed = parse_annotation(SENTIMENT, _annotation(completed_by=user), TASK)

    assert parsed.annotator_ref == "label-studio:5"
    assert "uni.example" not in parsed.model_dump_json()
    assert parsed.created_at is not None and parsed.created_at.isoformat().endswith("+00:00")
    assert parsed.lead_time_seconds == 12.0


def test_results_of_other_controls_are_ignored() -> None:
    comment = {"from_name": "notes", "type": "textarea", "value": {"text": ["hm"]}}

    parsed = parse_annotation(SENTIMENT, _annotation(result=[comment, *_choices("positive")]), TASK)

    assert parsed.value.labels == ["positive"]


@pytest.mark.parametrize(
    ("annotation", "task", "message"),
    [
        (_annotation(result=_choices("positive", "negative")), TASK, "exactly one label"),
        (_annotation(was_cancelled=True), TASK, "skipped"),
        (_annotation(), {"id": 9, "data": {"text": "x"}}, "no credits_item"),
        (_annotation(result="nope"), TASK, "no result list"),
        (_annotation(completed_by=None), TASK, "completed_by"),
    ],
    ids=["two-labels", "skipped", "foreign-task", "no-result", "no-annotator"],
)
def test_an_unusable_annotation_is_invalid_input(
    annotation: dict[str, Any], task: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_annotation(SENTIMENT, annotation, task)


def test_spans_past_the_text_are_refused() -> None:
    annotation = _annotation(result=_spans((0, 40, "PER")))

    with pytest.raises(InvalidInput, match="past the text's end"):
        parse_annotation(ENTITIES, annotation, TASK)


@pytest.mark.parametrize("action", ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"])
def test_an_annotation_webhook_is_parsed(action: str) -> None:
    payload = {"action": action, "annotation": _annotation(), "task": TASK, "project": {"id": 3}}

    event = parse_webhook(SENTIMENT, payload)

    assert event.action == action
    assert event.project_id == 3
    assert event.annotation is not None
    assert (event.annotation.item_ref, event.annotation.annotation_id) == ("77", 31)
    assert event.annotation.value.labels == ["negative"]


def test_other_webhook_actions_carry_no_annotation() -> None:
    event = parse_webhook(SENTIMENT, {"action": "PROJECT_UPDATED", "project": {"id": 3}})

    assert event.annotation is None
    assert event.action == "PROJECT_UPDATED"


@pytest.mark.parametrize(
    "payload",
    [None, [], {"no": "action"}, {"action": "ANNOTATION_CREATED", "project": {"id": 1}}],
)
def test_a_malformed_webhook_is_invalid_input(payload: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_webhook(SENTIMENT, payload)


# -- the webhook secret ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "secret", "accepted"),
    [
        ({WEBHOOK_SECRET_HEADER: "s3cret"}, "s3cret", True),
        ({WEBHOOK_SECRET_HEADER.lower(): "s3cret"}, SecretStr("s3cret"), True),
        ({WEBHOOK_SECRET_HEADER: "s3cret "}, "s3cret", False),
        ({WEBHOOK_SECRET_HEADER: "wrong"}, "s3cret", False),
        ({}, "s3cret", False),
        ({WEBHOOK_SECRET_HEADER: ""}, "", False),
        ({WEBHOOK_SECRET_HEADER: "any"}, SecretStr(""), False),
        ({WEBHOOK_SECRET_HEADER: "dé"}, "dé", True),
    ],
)
def test_the_webhook_secret_is_checked(
    headers: dict[str, str], secret: str | SecretStr, accepted: bool
) -> None:
    assert verify_webhook(headers, secret) is accepted


# -- settings --------------------------------------------------------------------------


def test_the_client_comes_from_settings_only_when_a_url_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert label_studio_client_from_settings(load_settings()) is None
    monkeypatch.setenv("CREDITS_LABEL_STUDIO_URL", "https://ls.example.org/")
    monkeypatch.setenv("CREDITS_LABEL_STUDIO_TOKEN", "tok-123456")
    monkeypatch.setenv("CREDITS_LABEL_STUDIO_TIMEOUT_S", "7.5")

    client = label_studio_client_from_settings(load_settings())

    assert client is not None
    assert client.url == "https://ls.example.org"
    assert client.timeout == (5.0, 7.5)
