"""Writing to a dataset checks who may read it before who may change it: an outsider
who cannot read a dataset (its only version a draft of another project) is told it
does not exist, exactly as for an id nobody has; one who reads it but does not
manage it is forbidden."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from datasets_world import ENERGY, SYSTEM, DatasetsWorld, build_world
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.datasets import publishing, queries, service
from credits.datasets.errors import DatasetForbidden, DatasetNotFound
from credits.identity.actor import Actor
from credits.identity.tokens import create_token
from credits.settings import load_settings

MISSING = 999_999


@pytest.fixture
def world(session: Session) -> DatasetsWorld:
    return build_world(session)


def _private_dataset(session: Session, world: DatasetsWorld) -> int:
    """A dataset whose only version is a draft: its project's members and ops read it."""
    return world.draft(session, title="Secret cores").dataset_id


def _public_dataset(session: Session, world: DatasetsWorld) -> int:
    draft = world.draft(session)
    world.complete(session, draft.id)
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    return draft.dataset_id


def _message(raised: pytest.ExceptionInfo[Exception], dataset_id: int) -> str:
    return str(raised.value).replace(str(dataset_id), "<id>")


def test_an_outsider_starting_a_version_of_a_private_dataset_is_told_it_does_not_exist(
    session: Session, world: DatasetsWorld
) -> None:
    private = _private_dataset(session, world)

    with pytest.raises(DatasetNotFound) as hidden:
        service.new_version(session, dataset_id=private, actor=world.outsider)
    with pytest.raises(DatasetNotFound) as missing:
        service.new_version(session, dataset_id=MISSING, actor=world.outsider)

    assert _message(hidden, private) == _message(missing, MISSING)
    assert [v.number for v in queries.list_dataset_versions(session, world.pi, private)] == [1]


def test_an_outsider_starting_a_version_of_a_public_dataset_is_forbidden(
    session: Session, world: DatasetsWorld
) -> None:
    public = _public_dataset(session, world)

    with pytest.raises(DatasetForbidden):
        service.new_version(session, dataset_id=public, actor=world.outsider)
    assert service.new_version(session, dataset_id=public, actor=world.member).number == 2


@pytest.fixture
def api(
    session: Session, world: DatasetsWorld, joined_session_factory: sessionmaker[Session]
) -> Callable[..., Any]:
    app = create_app(load_settings(), session_factory=joined_session_factory)
    app.extensions[STORE_KEY] = world.store
    client: FlaskClient = app.test_client()
    secrets: dict[str, str] = {}

    def bearer(actor: Actor) -> dict[str, str]:
        assert actor.email is not None
        if actor.email not in secrets:
            secrets[actor.email] = create_token(session, email=actor.email, actor=SYSTEM).secret
            session.flush()
        return {"Authorization": f"Bearer {secrets[actor.email]}"}

    def call(method: str, path: str, actor: Actor, body: Any = None) -> Any:
        return client.open(f"/api/v1{path}", method=method, headers=bearer(actor), json=body)

    return call


def _problem(response: Any, dataset_id: int) -> dict[str, Any]:
    body: dict[str, Any] = response.get_json()
    body["detail"] = str(body.get("detail", "")).replace(str(dataset_id), "<id>")
    body.pop("instance", None)
    return {"status": response.status_code, **body}


def test_the_api_answers_an_outsider_alike_for_a_private_dataset_and_a_missing_one(
    session: Session, world: DatasetsWorld, api: Callable[..., Any]
) -> None:
    private = _private_dataset(session, world)

    read = api("GET", f"/datasets/{private}/versions", world.outsider)
    started = api("POST", f"/datasets/{private}/versions", world.outsider)
    unknown = api("POST", f"/datasets/{MISSING}/versions", world.outsider)

    assert read.status_code == started.status_code == unknown.status_code == 404
    assert _problem(started, private) == _problem(unknown, MISSING)
    # Its members still start versions (here: the draft it has is in the way).
    assert api("POST", f"/datasets/{private}/versions", world.member).status_code == 409


def test_the_api_forbids_an_outsider_a_new_version_of_a_public_dataset(
    session: Session, world: DatasetsWorld, api: Callable[..., Any]
) -> None:
    public = _public_dataset(session, world)

    assert api("POST", f"/datasets/{public}/versions", world.outsider).status_code == 403
    assert api("POST", f"/datasets/{public}/versions", world.member).status_code == 201


VERSION_WRITES: dict[str, tuple[str, str, Any]] = {
    "metadata": ("PATCH", "", {"title": "Mine now"}),
    "datasheet": ("PATCH", "/datasheet", {"uses": "Anything"}),
    "publish": ("POST", "/publish", None),
    "deprecate": ("POST", "/deprecate", None),
    "provenance": ("POST", "/provenance", {"job_ids": []}),
    "remove file": ("DELETE", "/files/events.csv", None),
    "multipart upload": ("POST", "/uploads", {"name": "x.csv", "size": 3}),
}


@pytest.mark.parametrize("write", sorted(VERSION_WRITES))
def test_every_version_write_hides_a_private_draft_from_an_outsider(
    session: Session, world: DatasetsWorld, api: Callable[..., Any], write: str
) -> None:
    method, suffix, body = VERSION_WRITES[write]
    draft = world.draft(session)
    world.complete(session, draft.id)

    hidden = api(method, f"/datasets/versions/{draft.id}{suffix}", world.outsider, body)
    unknown = api(method, f"/datasets/versions/{MISSING}{suffix}", world.outsider, body)

    assert hidden.status_code == unknown.status_code == 404, hidden.get_data(as_text=True)


@pytest.mark.parametrize("write", sorted(VERSION_WRITES))
def test_every_version_write_forbids_an_outsider_a_public_version(
    session: Session, world: DatasetsWorld, api: Callable[..., Any], write: str
) -> None:
    method, suffix, body = VERSION_WRITES[write]
    draft = world.draft(session)
    world.complete(session, draft.id)
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)

    answer = api(method, f"/datasets/versions/{draft.id}{suffix}", world.outsider, body)

    assert answer.status_code == 403, answer.get_data(as_text=True)
