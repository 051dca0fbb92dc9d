"""DOIs through DataCite's REST API, against a local stub of it (datacite_stub.py):
reserved on first save, findable on publish, updated on deprecation, hidden on
take-down; retries, refusals, idempotency, the sweep; off by default."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import requests
from click.testing import CliRunner, Result
from datacite_stub import (
    PASSWORD,
    PREFIX,
    REPOSITORY_ID,
    DataCiteStub,
    Fault,
    running_datacite_stub,
)
from datasets_world import ENERGY, DatasetsWorld, build_world, datacite_schema
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.cli import main
from credits.datasets import publishing, queries, service
from credits.datasets.datacite import (
    DataCiteClient,
    DoiMetadataRefused,
    DoiRefused,
    DoiUnavailable,
    RetryPolicy,
)
from credits.datasets.doi import (
    DoiRegistrar,
    doi_of,
    doi_registrar_from_settings,
    finish_after_commit,
    sync_dois,
)
from credits.datasets.models import DatasetDoi, VersionState
from credits.db import utcnow
from credits.embedded import Chores
from credits.settings import Settings, SettingsError, load_settings
from credits.worker import SYNC_DOIS, make_celery

PUBLIC = "https://data.example.org"
OPS = "ops@platform.example"
Run = Callable[..., Result]


@pytest.fixture
def world(session: Session, tmp_path: Path) -> DatasetsWorld:
    return build_world(session, tmp_path / "blobs")


@pytest.fixture
def stub() -> Iterator[DataCiteStub]:
    with running_datacite_stub() as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


def _settings(stub: DataCiteStub, **changes: str) -> Settings:
    values = {
        "datacite_url": stub.url,
        "datacite_repository_id": REPOSITORY_ID,
        "datacite_password": PASSWORD,
        "datacite_prefix": PREFIX,
        "public_url": PUBLIC,
    }
    return load_settings(**(values | changes))


@pytest.fixture
def registrar(stub: DataCiteStub, sleeps: list[float]) -> DoiRegistrar:
    made = doi_registrar_from_settings(_settings(stub), sleep=sleeps.append)
    assert made is not None
    return made


@pytest.fixture
def factory(joined_session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    return joined_session_factory


def _record(session: Session, version_id: int) -> DatasetDoi:
    session.expire_all()
    record = session.get(DatasetDoi, version_id)
    assert record is not None
    return record


def _saved(
    session: Session,
    world: DatasetsWorld,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> int:
    """A complete draft whose draft DOI is reserved."""
    draft = service.create_dataset(
        session, project_id=world.project_id, title="Calving", actor=world.pi, dois=registrar
    )
    world.complete(session, draft.id)
    finish_after_commit(factory, registrar, draft.id)
    return draft.id


def _publish(session: Session, world: DatasetsWorld, registrar: DoiRegistrar, vid: int) -> None:
    publishing.publish_version(
        session, version_id=vid, actor=world.pi, energy=ENERGY, dois=registrar
    )


def test_first_save_reserves_a_draft_doi_named_after_the_version(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> None:
    draft = service.create_dataset(
        session, project_id=world.project_id, title="Calving", actor=world.pi, dois=registrar
    )
    assert stub.calls == []  # nothing over HTTP inside the transaction
    assert _record(session, draft.id).pending

    report = finish_after_commit(factory, registrar, draft.id)

    doi = f"{PREFIX}/{draft.public_id}"
    assert report is not None
    assert report.done == [doi]
    assert stub.state(doi) == "draft"
    (post,) = stub.calls_to("POST")
    assert post.path == "/dois"
    assert post.body == {"data": {"type": "dois", "attributes": {"doi": doi}}}
    record = _record(session, draft.id)
    assert (record.datacite_state, record.pending, record.last_error) == ("draft", False, None)
    assert doi_of(session, draft.id) is None  # a draft DOI resolves nowhere yet


def test_publish_makes_the_doi_findable_with_its_landing_page_and_full_metadata(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> None:
    vid = _saved(session, world, registrar, factory)
    version = queries.get_version(session, world.pi, vid)
    doi = f"{PREFIX}/{version.public_id}"

    _publish(session, world, registrar, vid)

    (put,) = stub.calls_to("PUT")
    assert put.path == f"/dois/{doi}"
    assert put.body is not None
    sent = put.body["data"]["attributes"]
    assert sent["event"] == "publish"
    assert sent["url"] == f"{PUBLIC}/datasets/versions/{version.public_id}"
    assert sent["doi"] == doi
    assert sent["titles"] == [{"title": "Glacier calving events"}]
    assert sent["types"]["resourceTypeGeneral"] == "Dataset"
    assert [c["name"] for c in sent["creators"]] == ["Lovelace, Ada", "Polar Data Group"]
    assert sent["rightsList"][0]["rightsIdentifier"] == "cc-by-4.0"
    metadata = {k: v for k, v in sent.items() if k not in {"event"}}
    jsonschema.Draft201909Validator(datacite_schema()).validate(metadata)
    assert stub.state(doi) == "findable"
    assert doi_of(session, vid) == (doi, "findable")
    assert _record(session, vid).pending is False


def test_a_version_saved_before_dois_were_on_gets_its_doi_at_publication(
    session: Session, world: DatasetsWorld, stub: DataCiteStub, registrar: DoiRegistrar
) -> None:
    draft = world.draft(session)  # no hook: DOIs were off then
    world.complete(session, draft.id)

    _publish(session, world, registrar, draft.id)

    assert [c.method for c in stub.calls] == ["POST", "PUT"]
    assert stub.state(f"{PREFIX}/{draft.public_id}") == "findable"


def test_a_version_published_before_dois_were_on_gets_none_when_taken_down(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> None:
    draft = world.draft(session)
    world.complete(session, draft.id)
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)

    publishing.take_down_version(
        session, version_id=draft.id, actor=world.ops, reason="licence dispute", dois=registrar
    )
    finish_after_commit(factory, registrar, draft.id)

    assert stub.calls == []
    assert doi_of(session, draft.id) is None
    assert session.get(DatasetDoi, draft.id) is None


def test_deprecation_updates_the_metadata_and_keeps_the_doi_findable(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> None:
    first = _saved(session, world, registrar, factory)
    _publish(session, world, registrar, first)
    dataset_id = queries.get_version(session, world.pi, first).dataset_id
    second = service.new_version(session, dataset_id=dataset_id, actor=world.pi, dois=registrar)
    finish_after_commit(factory, registrar, second.id)
    _publish(session, world, registrar, second.id)
    stub.calls.clear()

    publishing.deprecate_version(
        session,
        version_id=first,
        actor=world.pi,
        successor_version_id=second.id,
        dois=registrar,
    )
    assert stub.calls == []
    finish_after_commit(factory, registrar, first)

    doi = f"{PREFIX}/{queries.get_version(session, world.pi, first).public_id}"
    (put,) = stub.calls
    assert put.method == "PUT"
    assert put.body is not None
    assert "event" not in put.body["data"]["attributes"]
    related = stub.attributes(doi)["relatedIdentifiers"]
    assert {
        "relatedIdentifier": f"{PUBLIC}/datasets/versions/{second.public_id}",
        "relatedIdentifierType": "URL",
        "relationType": "IsPreviousVersionOf",
    } in related
    assert stub.state(doi) == "findable"
    assert len(stub.dois) == 2  # one DOI per version, none minted twice


def test_take_down_hides_the_doi_which_keeps_resolving_to_the_tombstone(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> None:
    vid = _saved(session, world, registrar, factory)
    _publish(session, world, registrar, vid)
    public_id = queries.get_version(session, world.pi, vid).public_id
    doi = f"{PREFIX}/{public_id}"

    publishing.take_down_version(
        session, version_id=vid, actor=world.ops, reason="court order", dois=registrar
    )
    finish_after_commit(factory, registrar, vid)

    put = stub.calls_to("PUT")[-1]
    assert put.body is not None
    assert put.body["data"]["attributes"]["event"] == "hide"
    attributes = stub.attributes(doi)
    assert attributes["state"] == "registered"
    assert attributes["url"] == f"{PUBLIC}/datasets/versions/{public_id}"  # the tombstone
    withdrawn = [d for d in attributes["dates"] if d["dateType"] == "Withdrawn"]
    assert withdrawn[0]["dateInformation"] == "court order"
    assert doi_of(session, vid) == (doi, "registered")
    # Why hide rather than delete: DataCite refuses to delete a registered DOI.
    gone = requests.delete(f"{stub.url}/dois/{doi}", auth=(REPOSITORY_ID, PASSWORD), timeout=5)
    assert gone.status_code == 405


def test_requests_are_retried_on_429_5xx_and_lost_connections_then_succeed(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
    sleeps: list[float],
) -> None:
    vid = _saved(session, world, registrar, factory)
    stub.fail_next(Fault(status=429, retry_after="3"), Fault(status=503), Fault(disconnect=True))

    _publish(session, world, registrar, vid)

    assert [c.status for c in stub.calls_to("PUT")] == [429, 503, 0, 200]
    assert sleeps == [3.0, 1.0, 2.0]  # Retry-After, then 0.5 s doubling
    assert queries.get_version(session, world.pi, vid).state is VersionState.PUBLISHED


def test_retries_are_bounded_and_an_outage_stops_the_publication(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
    sleeps: list[float],
) -> None:
    vid = _saved(session, world, registrar, factory)
    stub.fail_next(Fault(status=429, retry_after="86400"), *[Fault(status=500)] * 3)

    with pytest.raises(DoiUnavailable) as raised:
        _publish(session, world, registrar, vid)

    assert len(stub.calls_to("PUT")) == RetryPolicy().attempts == 4
    assert sleeps == [30.0, 1.0, 2.0]  # Retry-After capped at 30 s
    assert raised.value.status == 503
    assert "after 4 attempts" in str(raised.value)


def test_a_refusal_names_datacite_s_titles_and_leaves_the_version_a_draft(
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
    session: Session,
) -> None:
    vid = _saved(session, world, registrar, factory)
    stub.refuse_next(("Is invalid", "metadata"), ("Publisher can't be blank", "publisher"))
    obj = {"session_factory": factory, "blob_store": world.store, "doi_registrar": registrar}

    published = CliRunner().invoke(
        main, ["datasets", "publish", str(vid), "--as", "pi@uni.example"], obj=obj
    )

    assert published.exit_code == 1
    doi = f"{PREFIX}/{queries.get_version(session, world.pi, vid).public_id}"
    assert published.output.strip().splitlines()[-1] == (
        f"error: DataCite refused to update {doi} (422): Is invalid (metadata); "
        "Publisher can't be blank (publisher)"
    )
    session.expire_all()
    assert queries.get_version(session, world.pi, vid).state is VersionState.DRAFT
    assert stub.state(doi) == "draft"


def test_a_refusal_is_a_422_problem_and_bad_credentials_a_502(
    stub: DataCiteStub, sleeps: list[float]
) -> None:
    good = DataCiteClient(stub.url, repository_id=REPOSITORY_ID, password=PASSWORD)
    bad = DataCiteClient(stub.url, repository_id=REPOSITORY_ID, password="wrong")

    with pytest.raises(DoiMetadataRefused) as invalid:
        good.reserve("10.9999/x")
    with pytest.raises(DoiRefused) as denied:
        bad.reserve(f"{PREFIX}/x")
    assert good.get(f"{PREFIX}/unknown") is None
    with pytest.raises(DoiRefused) as unknown:
        good.update(f"{PREFIX}/unknown", {"url": PUBLIC}, event="publish")

    assert invalid.value.status == 422
    assert invalid.value.extra["errors"] == [
        {"title": "This DOI's prefix is not assigned to you", "source": "doi"}
    ]
    assert denied.value.status == 502
    assert "(401): Bad credentials." in str(denied.value)
    assert unknown.value.extra["datacite_status"] == 404
    assert stub.dois == {}


def test_a_retried_publication_never_mints_a_second_doi(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> None:
    # The reservation's answer is lost: the retry finds the DOI taken and reads it back.
    stub.fail_next(Fault(disconnect=True, after=True))
    vid = _saved(session, world, registrar, factory)
    doi = f"{PREFIX}/{queries.get_version(session, world.pi, vid).public_id}"
    assert _record(session, vid).datacite_state == "draft"
    assert [c.method for c in stub.calls] == ["POST", "POST", "GET"]

    # A publication whose commit fails after DataCite accepted it, then published again.
    with session.begin_nested() as attempt:
        _publish(session, world, registrar, vid)
        attempt.rollback()
    session.expire_all()
    assert queries.get_version(session, world.pi, vid).state is VersionState.DRAFT
    stub.fail_next(Fault(disconnect=True, after=True))  # and this answer is lost too
    _publish(session, world, registrar, vid)

    assert list(stub.dois) == [doi]
    assert {c.path for c in stub.calls_to("PUT")} == {f"/dois/{doi}"}
    assert stub.state(doi) == "findable"
    assert session.scalar(select(func.count()).select_from(DatasetDoi)) == 1


def test_the_sweep_finishes_what_datacite_could_not_be_told_backing_off_between_tries(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> None:
    stub.fail_next(*[Fault(status=503)] * 4)
    draft = service.create_dataset(
        session, project_id=world.project_id, title="Calving", actor=world.pi, dois=registrar
    )
    report = finish_after_commit(factory, registrar, draft.id)
    assert report is not None
    doi = f"{PREFIX}/{draft.public_id}"
    assert list(report.failed) == [doi]
    record = _record(session, draft.id)
    assert record.pending and record.attempts == 1 and record.datacite_state is None
    assert record.last_error is not None and "503" in record.last_error
    now = utcnow()

    early = sync_dois(session, registrar, now=now)  # still backing off: left alone
    later = sync_dois(session, registrar, now=now + timedelta(minutes=2))

    assert (early.done, early.pending) == ([], 1)
    assert (later.done, later.failed, later.pending) == ([doi], {}, 0)
    assert stub.state(doi) == "draft"
    assert _record(session, draft.id).attempts == 0


def test_cli_sync_dois_finishes_a_take_down_made_while_datacite_was_down(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> None:
    vid = _saved(session, world, registrar, factory)
    _publish(session, world, registrar, vid)
    obj = {"session_factory": factory, "blob_store": world.store, "doi_registrar": registrar}
    stub.fail_next(*[Fault(status=500)] * 4)

    taken = CliRunner().invoke(
        main,
        [*("datasets", "takedown", str(vid), "--reason", "consent withdrawn"), "--as", OPS],
        obj=obj,
    )
    doi = f"{PREFIX}/{queries.get_version(session, world.pi, vid).public_id}"
    assert taken.exit_code == 0, taken.output  # the take-down never waits on DataCite
    assert f"warning: doi {doi} left pending" in taken.output
    assert stub.state(doi) == "findable"
    _record(session, vid).next_attempt_at = None  # as if the backoff had passed
    session.flush()

    synced = CliRunner().invoke(main, ["datasets", "sync-dois"], obj=obj)

    assert synced.exit_code == 0, synced.output
    assert synced.output.splitlines() == [f"synced {doi}", "1 synced, 0 failed, 0 still pending"]
    assert stub.state(doi) == "registered"


def test_dois_are_off_by_default_and_nothing_speaks_http(
    session: Session,
    world: DatasetsWorld,
    factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_http(*args: object, **kwargs: object) -> None:
        raise AssertionError("no HTTP request may be made with DOIs off")

    monkeypatch.setattr(requests.Session, "request", no_http)
    assert doi_registrar_from_settings(load_settings()) is None
    obj = {"session_factory": factory, "blob_store": world.store}
    run = CliRunner()
    draft = world.draft(session)
    world.complete(session, draft.id)

    published = run.invoke(
        main, ["datasets", "publish", str(draft.id), "--as", "pi@uni.example"], obj=obj
    )
    taken = run.invoke(
        main,
        ["datasets", "takedown", str(draft.id), "--reason", "test", "--as", "ops@platform.example"],
        obj=obj,
    )
    swept = run.invoke(main, ["datasets", "sync-dois"], obj=obj)

    assert published.exit_code == 0, published.output
    assert "doi" not in published.output
    assert taken.exit_code == 0, taken.output
    assert swept.exit_code == 1
    assert swept.output.startswith("error: DOIs are off")
    assert session.scalar(select(func.count()).select_from(DatasetDoi)) == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"datacite_url": "https://api.test.datacite.org", "datacite_prefix": "10.5072"},
            "invalid settings: DOIs need every DataCite setting; missing "
            "CREDITS_DATACITE_REPOSITORY_ID, CREDITS_DATACITE_PASSWORD",
        ),
        ({"datacite_prefix": "10.50"}, "CREDITS_DATACITE_PREFIX must be a DOI prefix like"),
        ({"datacite_url": "ftp://x"}, "CREDITS_DATACITE_URL must be an http(s) URL"),
        ({"public_url": ""}, "DOIs need CREDITS_PUBLIC_URL"),
    ],
)
def test_doi_settings_are_all_or_nothing_with_one_line_errors(
    changes: dict[str, str], message: str
) -> None:
    complete = {
        "datacite_url": "https://api.test.datacite.org",
        "datacite_repository_id": REPOSITORY_ID,
        "datacite_password": PASSWORD,
        "datacite_prefix": PREFIX,
        "public_url": PUBLIC,
    }
    assert load_settings(**complete).dois_enabled
    assert not load_settings().dois_enabled
    values = changes if message.startswith("invalid settings") else complete | changes

    with pytest.raises(SettingsError) as raised:
        load_settings(**values)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_publish_take_down_and_sweep_lock_their_rows_on_both_databases(
    any_session: Session, stub: DataCiteStub, registrar: DoiRegistrar, tmp_path: Path
) -> None:
    world = build_world(any_session, tmp_path / "blobs")
    draft = service.create_dataset(
        any_session, project_id=world.project_id, title="Ice", actor=world.pi, dois=registrar
    )
    world.complete(any_session, draft.id)
    _publish(any_session, world, registrar, draft.id)
    publishing.take_down_version(
        any_session, version_id=draft.id, actor=world.ops, reason="retracted", dois=registrar
    )

    report = sync_dois(any_session, registrar)

    doi = f"{PREFIX}/{draft.public_id}"
    assert (report.done, report.pending) == ([doi], 0)
    assert stub.state(doi) == "registered"
    assert [c.method for c in stub.calls] == ["POST", "PUT", "PUT"]


def test_the_embedded_chores_and_celery_beat_sweep_dois_only_when_configured(
    session: Session,
    world: DatasetsWorld,
    stub: DataCiteStub,
    registrar: DoiRegistrar,
    factory: sessionmaker[Session],
) -> None:
    draft = service.create_dataset(
        session, project_id=world.project_id, title="Calving", actor=world.pi, dois=registrar
    )
    doi = f"{PREFIX}/{draft.public_id}"

    assert "dois" not in Chores(factory, load_settings()).run_due(now=1000.0)
    assert stub.calls == []
    assert "dois" in Chores(factory, _settings(stub), dois=registrar).run_due(now=1000.0)
    assert stub.state(doi) == "draft"

    off = make_celery(load_settings(task_always_eager=True), session_factory=factory)
    on = make_celery(_settings(stub, task_always_eager="true"), session_factory=factory)
    assert SYNC_DOIS not in off.tasks
    assert "sync-dois" not in off.conf.beat_schedule
    assert on.conf.beat_schedule["sync-dois"]["task"] == SYNC_DOIS
    publishing.publish_version(
        session, version_id=world.complete(session, draft.id).id, actor=world.pi, energy=ENERGY
    )  # published without the hook: the sweep still makes its DOI findable
    assert on.tasks[SYNC_DOIS].delay().get(timeout=10) == {
        "done": [doi],
        "failed": {},
        "pending": 0,
    }
    assert stub.state(doi) == "findable"
