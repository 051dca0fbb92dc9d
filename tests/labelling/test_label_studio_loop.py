"""The Label Studio sweep against the local stub: orders placed once, each order's
failure kept to itself, annotations recorded once across sweeps; the signed
image links Label Studio's annotators load images from; the chores, beat and CLI
that run the sweep."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from label_studio_stub import TOKEN, Fault, LabelStudioStub, running_label_studio_stub
from labelling_world import CREDIT, LabellingWorld, build_world
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.cli import main
from credits.db import utcnow
from credits.embedded import Chores
from credits.labelling import orders
from credits.labelling.image_links import image_link, image_links_from_settings
from credits.labelling.label_schema import LabelSchema, SchemaKind
from credits.labelling.label_studio import LabelStudioClient, NewTask
from credits.labelling.label_studio_loop import project_title, sweep_label_studio
from credits.labelling.models import Adapter, Item, Order, OrderStatus, SourceKind
from credits.labelling.schemas import ItemIn, OrderIn, OrderSource, VendorOut
from credits.ledger.verify import verify_ledger
from credits.settings import Settings, load_settings
from credits.storage.factory import blob_store_for_url
from credits.worker import SYNC_LABEL_STUDIO, make_celery

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
ANIMALS = LabelSchema(kind=SchemaKind.IMAGE_CLASSIFICATION, labels=["cat", "dog"])


@pytest.fixture
def stub() -> Iterator[LabelStudioStub]:
    with running_label_studio_stub() as running:
        yield running


@pytest.fixture
def client(stub: LabelStudioStub) -> LabelStudioClient:
    return LabelStudioClient(stub.url, TOKEN, timeout_s=2.0)


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    return build_world(session)


@pytest.fixture
def vendor(session: Session, world: LabellingWorld) -> VendorOut:
    return world.add_vendor(session, "Label Studio", adapter=Adapter.LABEL_STUDIO)


def _order(session: Session, factory: sessionmaker[Session], order_id: int) -> Order:
    with factory() as fresh:
        order = fresh.get(Order, order_id)
        assert order is not None
        fresh.expunge(order)
        return order


def _task_ids(factory: sessionmaker[Session], order_id: int) -> list[str | None]:
    with factory() as fresh:
        return list(
            fresh.scalars(
                select(Item.external_ref).where(Item.order_id == order_id).order_by(Item.position)
            )
        )


def _choices(label: str) -> list[dict[str, Any]]:
    return [
        {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [label]}}
    ]


def test_the_sweep_places_each_order_once_and_a_rerun_adds_nothing(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    world: LabellingWorld,
    vendor: VendorOut,
    stub: LabelStudioStub,
    client: LabelStudioClient,
) -> None:
    first = world.placed(session, vendor_id=vendor.id, items=3)
    second = world.placed(session, vendor_id=vendor.id, items=2)
    inhouse = world.placed(session, items=2)
    session.flush()

    placed = sweep_label_studio(joined_session_factory, client)
    again = sweep_label_studio(joined_session_factory, client)

    assert placed.placed == {first.id: 3, second.id: 2}
    assert placed.failed == {}
    assert again.placed == {}
    assert len(stub.projects) == 2
    assert len(stub.tasks) == 5
    titles = {p["title"] for p in stub.projects.values()}
    assert titles == {project_title(o.id, "Sentiment of reviews") for o in (first, second)}
    assert _order(session, joined_session_factory, inhouse.id).external_ref is None
    assert all(_task_ids(joined_session_factory, first.id))


def test_a_project_created_before_a_crash_is_found_and_its_tasks_adopted(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    world: LabellingWorld,
    vendor: VendorOut,
    stub: LabelStudioStub,
    client: LabelStudioClient,
) -> None:
    order = world.placed(session, vendor_id=vendor.id, items=3)
    session.flush()
    # What a sweep that died after Label Studio's answers, before its commits, left there.
    project = client.create_project(
        title=project_title(order.id, order.title), description="", schema=ANIMALS
    )
    items = session.scalars(select(Item).where(Item.order_id == order.id).order_by(Item.position))
    first = next(iter(items))
    (task_id,) = client.import_tasks(
        project.id, ANIMALS, [NewTask(str(first.id), "https://x.example/1.png")]
    ).task_ids or [0]

    report = sweep_label_studio(joined_session_factory, client)

    assert report.placed == {order.id: 2}
    assert list(stub.projects) == [project.id]
    assert _order(session, joined_session_factory, order.id).external_ref == str(project.id)
    refs = _task_ids(joined_session_factory, order.id)
    assert refs[0] == str(task_id)
    assert len(stub.tasks) == 3
    assert len(set(refs)) == 3


def test_a_failing_order_is_reported_and_placed_by_the_next_sweep_without_touching_others(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    world: LabellingWorld,
    vendor: VendorOut,
    stub: LabelStudioStub,
    client: LabelStudioClient,
) -> None:
    failing = world.placed(session, vendor_id=vendor.id, items=2)
    fine = world.placed(session, vendor_id=vendor.id, items=2)
    session.flush()
    available = world.available(session)
    # The first order's project lookup answers 500.
    stub.fail_next(Fault(status=500, detail="database is locked"))

    report = sweep_label_studio(joined_session_factory, client)

    assert report.placed == {fine.id: 2}
    assert "HTTP 500" in report.failed[failing.id]
    assert "database is locked" in report.failed[failing.id]
    assert _order(session, joined_session_factory, failing.id).external_ref is None
    assert _order(session, joined_session_factory, failing.id).status == OrderStatus.PLACED

    retried = sweep_label_studio(joined_session_factory, client)

    assert retried.placed == {failing.id: 2}
    assert retried.failed == {}
    assert len(stub.projects) == 2
    assert world.available(session) == available
    assert verify_ledger(session).ok


def test_annotations_are_recorded_once_across_sweeps_until_the_order_is_delivered(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    world: LabellingWorld,
    vendor: VendorOut,
    stub: LabelStudioStub,
    client: LabelStudioClient,
) -> None:
    order = world.placed(session, vendor_id=vendor.id, items=2, redundancy=2)
    session.flush()
    sweep_label_studio(joined_session_factory, client)
    first, second = (int(ref or 0) for ref in _task_ids(joined_session_factory, order.id))
    stub.user_id = 21
    client.create_annotation(first, _choices("positive"))
    client.create_annotation(second, _choices("negative"))

    partly = sweep_label_studio(joined_session_factory, client)
    replayed = sweep_label_studio(joined_session_factory, client)
    in_progress = _order(session, joined_session_factory, order.id)
    stub.user_id = 22
    client.create_annotation(first, _choices("positive"))
    client.create_annotation(second, _choices("neutral"))
    finished = sweep_label_studio(joined_session_factory, client)
    after = sweep_label_studio(joined_session_factory, client)

    assert (partly.recorded, replayed.recorded) == ({order.id: 2}, {order.id: 0})
    assert in_progress.status == OrderStatus.IN_PROGRESS
    assert in_progress.captured_micro == 2 * CREDIT
    assert finished.recorded == {order.id: 2}
    delivered = _order(session, joined_session_factory, order.id)
    assert delivered.status == OrderStatus.DELIVERED
    assert delivered.captured_micro == 4 * CREDIT == delivered.quoted_micro
    # A delivered order is not collected from again.
    assert after.recorded == {}


def test_an_image_order_goes_out_with_signed_links_that_serve_its_images(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    world: LabellingWorld,
    vendor: VendorOut,
    stub: LabelStudioStub,
    client: LabelStudioClient,
    tmp_path: Path,
) -> None:
    settings = load_settings().model_copy(update={"public_url": "https://credits.example.org"})
    app = create_app(settings, session_factory=joined_session_factory)
    store = app.extensions[STORE_KEY] = blob_store_for_url(f"memory://ls-{tmp_path.name}")
    blob = store.put_stream([PNG], max_bytes=1024)
    order = _image_order(session, world, vendor, blob.sha256)
    session.flush()

    without = sweep_label_studio(joined_session_factory, client)
    report = sweep_label_studio(
        joined_session_factory,
        client,
        image_url=image_links_from_settings(settings, now=utcnow()),
    )

    assert "needs the URL" in without.failed[order.id]
    assert report.placed == {order.id: 1}
    (task,) = stub.tasks.values()
    url = task["data"]["image"]
    assert url.startswith("https://credits.example.org/api/v1/labelling/items/")
    web: FlaskClient = app.test_client()
    served = web.get(url.removeprefix("https://credits.example.org"))
    assert served.status_code == 200
    assert served.data == PNG
    assert served.content_type == "image/png"
    forged = web.get(url.removeprefix("https://credits.example.org")[:-4] + "0000")
    assert forged.status_code == 403
    assert forged.content_type == "application/problem+json"


def test_an_expired_image_link_is_refused(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    settings = load_settings()
    app = create_app(settings, session_factory=joined_session_factory)
    url = image_link(
        "http://localhost",
        settings.secret_key.get_secret_value(),
        item_id=1,
        now=utcnow() - timedelta(days=100),
        lifetime=timedelta(days=1),
    )

    answer = app.test_client().get(url.removeprefix("http://localhost"))

    assert answer.status_code == 403
    assert "expired" in answer.get_json()["detail"]


def _image_order(session: Session, world: LabellingWorld, vendor: VendorOut, sha256: str) -> Any:
    draft = orders.create_order(
        session,
        order=OrderIn.model_validate(
            {
                "project_id": world.project_id,
                "vendor_id": vendor.id,
                "title": "Cats or dogs",
                "label_schema": ANIMALS.model_dump(),
                "redundancy": 1,
            }
        ),
        items=[ItemIn(external_id="pet.png", blob_sha256=sha256, media_type="image/png")],
        source=OrderSource(kind=SourceKind.UPLOAD, name="1 images"),
        actor=world.pi,
    )
    orders.quote_order(session, order_id=draft.id, actor=world.pi)
    return orders.place_order(session, order_id=draft.id, actor=world.pi)


def _configured(stub: LabelStudioStub) -> Settings:
    return load_settings().model_copy(
        update={"label_studio_url": stub.url, "label_studio_token": SecretStr(TOKEN)}
    )


def test_the_embedded_chores_and_beat_run_the_sweep_only_when_label_studio_is_set(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    world: LabellingWorld,
    vendor: VendorOut,
    stub: LabelStudioStub,
) -> None:
    by_chores = world.placed(session, vendor_id=vendor.id, items=1)
    session.flush()
    unset = Chores(joined_session_factory, load_settings())
    chores = Chores(joined_session_factory, _configured(stub))

    assert "label-studio" not in unset.run_due(now=0.0)
    assert "label-studio" in chores.run_due(now=0.0)
    assert _order(session, joined_session_factory, by_chores.id).external_ref is not None

    by_beat = world.placed(session, vendor_id=vendor.id, items=2)
    session.flush()
    celery = make_celery(_configured(stub), session_factory=joined_session_factory)
    report = celery.tasks[SYNC_LABEL_STUDIO].apply().get()

    assert "sync-label-studio" not in make_celery(load_settings()).conf.beat_schedule
    assert celery.conf.beat_schedule["sync-label-studio"]["task"] == SYNC_LABEL_STUDIO
    assert report["placed"] == {by_beat.id: 2}
    assert report["failed"] == {}


def test_the_cli_sweeps_and_names_what_failed(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    world: LabellingWorld,
    vendor: VendorOut,
    stub: LabelStudioStub,
) -> None:
    order = world.placed(session, vendor_id=vendor.id, items=2)
    session.flush()
    obj = {"settings": _configured(stub), "session_factory": joined_session_factory}
    runner = CliRunner()
    stub.fail_next(Fault(status=503, detail="maintenance"))

    failed = runner.invoke(main, ["labelling", "sync-label-studio"], obj=obj)
    done = runner.invoke(
        main, ["labelling", "sync-label-studio", "--order", str(order.id)], obj=obj
    )
    unset = runner.invoke(
        main,
        ["labelling", "sync-label-studio"],
        obj={"settings": load_settings(), "session_factory": joined_session_factory},
    )

    assert failed.exit_code == 1
    assert (
        f"order {order.id} failed: Label Studio failed to list projects: HTTP 503" in failed.output
    )
    assert done.exit_code == 0, done.output
    assert f"order {order.id}: 2 tasks imported" in done.output
    assert unset.exit_code == 1
    assert "Label Studio is not configured" in unset.output
