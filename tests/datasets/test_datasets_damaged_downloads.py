"""A stored file whose bytes are not what its record says is never served as valid."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from datasets_world import CSV, ENERGY, DatasetsWorld, build_world
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.datasets import publishing
from credits.settings import load_settings
from credits.storage import blob_key


def _published(
    session: Session, factory: sessionmaker[Session]
) -> tuple[DatasetsWorld, str, FlaskClient, str]:
    world = build_world(session)
    draft = world.draft(session)
    version = world.complete(session, draft.id, **{"events.csv": CSV})
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    session.flush()
    app = create_app(load_settings(), session_factory=factory)
    app.extensions[STORE_KEY] = world.store
    url = f"/api/v1/datasets/versions/{draft.id}/files/events.csv"
    return world, version.files[0].sha256, app.test_client(), url


def _overwrite(world: DatasetsWorld, sha256: str, data: bytes) -> None:
    world.store.fs.pipe_file(world.store.path(blob_key(sha256)), data)


def _remove(world: DatasetsWorld, sha256: str) -> None:
    world.store.fs.rm_file(world.store.path(blob_key(sha256)))


DAMAGES: dict[str, Callable[[DatasetsWorld, str], None]] = {
    "cut short": lambda world, sha: _overwrite(world, sha, CSV[:10]),
    "lost": _remove,
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_stored_file_cut_short_or_lost_is_a_503_problem_not_the_file(
    session: Session, joined_session_factory: sessionmaker[Session], damage: str
) -> None:
    world, sha256, client, url = _published(session, joined_session_factory)
    DAMAGES[damage](world, sha256)

    answer = client.get(url)

    assert answer.status_code == 503
    assert answer.get_json()["type"].endswith("/stored-file-damaged")
    assert "events.csv" in answer.get_json()["detail"]


def test_an_intact_file_is_served_whole_under_its_sha256(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    _, sha256, client, url = _published(session, joined_session_factory)
    answer = client.get(url)
    assert answer.status_code == 200 and answer.get_data() == CSV
    assert answer.headers["ETag"] == f'"{sha256}"'
