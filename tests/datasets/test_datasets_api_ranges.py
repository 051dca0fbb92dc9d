"""Range requests on downloads served by the app itself (local or memory storage), as
RFC 9110 section 14 has them and as S3 answers them behind the presigned redirect: a
suffix longer than the file is all of it, and a Range header in another unit or not
syntactically valid is ignored; only a range starting past the end is unsatisfiable."""

from __future__ import annotations

import pytest
from datasets_world import CSV, ENERGY, DatasetsWorld, build_world
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.datasets import publishing
from credits.settings import load_settings

SIZE = len(CSV)


def _published_url(session: Session, world: DatasetsWorld, data: bytes) -> str:
    draft = world.draft(session)
    world.complete(session, draft.id, **{"events.csv": data})
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    session.flush()
    return f"/api/v1/datasets/versions/{draft.id}/files/events.csv"


@pytest.fixture
def world(session: Session) -> DatasetsWorld:
    return build_world(session)


@pytest.fixture
def client(world: DatasetsWorld, joined_session_factory: sessionmaker[Session]) -> FlaskClient:
    app = create_app(load_settings(), session_factory=joined_session_factory)
    app.extensions[STORE_KEY] = world.store
    return app.test_client()


@pytest.fixture
def url(session: Session, world: DatasetsWorld) -> str:
    return _published_url(session, world, CSV)


def _get(client: FlaskClient, url: str, range_: str) -> TestResponse:
    return client.get(url, headers={"Range": range_})


def _whole(response: TestResponse, data: bytes = CSV) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.get_data() == data
    assert "Content-Range" not in response.headers
    assert response.headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize("suffix", [SIZE + 1, SIZE * 10, 10**18])
def test_a_suffix_range_longer_than_the_file_gets_the_whole_file_as_206(
    client: FlaskClient, url: str, suffix: int
) -> None:
    response = _get(client, url, f"bytes=-{suffix}")

    assert response.status_code == 206, response.get_data(as_text=True)[:300]
    assert response.get_data() == CSV
    assert response.headers["Content-Range"] == f"bytes 0-{SIZE - 1}/{SIZE}"
    assert response.headers["Content-Length"] == str(SIZE)


def test_a_suffix_range_of_an_empty_file_gets_the_empty_file(
    session: Session, world: DatasetsWorld, client: FlaskClient
) -> None:
    empty = _published_url(session, world, b"")

    _whole(_get(client, empty, "bytes=-5"), b"")


@pytest.mark.parametrize("range_", ["items=0-3", "lines=-2", "none=0-", "by tes=0-3"])
def test_a_range_in_another_unit_is_ignored(client: FlaskClient, url: str, range_: str) -> None:
    _whole(_get(client, url, range_))


@pytest.mark.parametrize(
    "range_", ["bytes=abc", "bytes=5-2", "bytes", "bytes=", "bytes=-", "bytes=1-x"]
)
def test_a_range_header_that_is_not_syntactically_valid_is_ignored(
    client: FlaskClient, url: str, range_: str
) -> None:
    _whole(_get(client, url, range_))


@pytest.mark.parametrize(
    "range_", [f"bytes={SIZE}-", f"bytes={SIZE}-{SIZE + 5}", f"bytes={SIZE * 3}-{SIZE * 4}"]
)
def test_a_range_starting_past_the_end_stays_unsatisfiable(
    client: FlaskClient, url: str, range_: str
) -> None:
    response = _get(client, url, range_)

    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"
    assert response.get_json()["type"].endswith("/invalid-range")


@pytest.mark.parametrize(
    ("range_", "start", "stop"),
    [("bytes=0-3", 0, 4), (f"bytes=2-{SIZE * 2}", 2, SIZE), ("bytes=-4", SIZE - 4, SIZE)],
)
def test_a_satisfiable_byte_range_gets_that_part_clamped_to_the_file(
    client: FlaskClient, url: str, range_: str, start: int, stop: int
) -> None:
    response = _get(client, url, range_)

    assert response.status_code == 206
    assert response.get_data() == CSV[start:stop]
    assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{SIZE}"
