"""The Label Studio sweep against the local stub: orders placed once, each order's
failure kept to itself, annotations recorded once across sweeps; the signed
image links Label Studio's annotators load images from; the chores, beat and CLI
that run the sweep."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from label_studio_stub import TOKEN, Fault, LabelStudioStub, running_label_studio_stub
from labelling_world import CREDIT, SENTIMENT, LabellingWorld, build_world
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
from credits.labelling.label_studio_loop import SweepReport, project_title, sweep_label_studio
from credits.labelling.models import Adapter, Item, Order, OrderStatus, SourceKind
from credits.labelling.schemas import ItemIn, OrderIn, OrderOut, OrderSource, VendorOut
from credits.ledger.verify import verify_ledger
from credits.settings import Settings, load_settings
from credits.storage.factory import blob_store_for_url
from credits.worker import SYNC_LABEL_STUDIO, make_celery

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
ANIMALS = LabelSchema(kind=SchemaKind.IMAGE_CLASSIFICATION, labels=["cat", "dog"])


@dataclass
class Setting:
    """A funded project with a Label Studio vendor, the stub as its server, and the
    factory the sweep opens its own transactions with."""

    session: Session
    factory: sessionmaker[Session]
    world: LabellingWorld
    vendor: VendorOut
    stub: LabelStudioStub
    client: LabelStudioClient

    def placed(self, **draft: Any) -> OrderOut:
        order = self.world.placed(self.session, vendor_id=self.vendor.id, **draft)
        self.session.flush()
        return order

    def sweep(self, **options: Any) -> SweepReport:
        return sweep_label_studio(self.factory, self.client, **options)

    def order(self, order_id: int) -> Order:
        with self.factory() as fresh:
            order = fresh.get_one(Order, order_id)
            fresh.expunge(order)
            return order

    def task_refs(self, order_id: int) -> list[str | None]:
        with self.factory() as fresh:
            query = select(Item.external_ref).where(Item.order_id == order_id)
            return list(fresh.scalars(query.order_by(Item.position)))


@pytest.fixture
def ls(session: Session, joined_session_factory: sessionmaker[Session]) -> Iterator[Setting]:
    world = build_world(session)
    vendor = world.add_vendor(session, "Label Studio", adapter=Adapter.LABEL_STUDIO)
    with running_label_studio_stub() as stub:
        client = LabelStudioClient(stub.url, TOKEN, timeout_s=2.0)
        yield Setting(session, joined_session_factory, world, vendor, stub, client)


def _choices(label: str) -> list[dict[str, Any]]:
    return [
        {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [label]}}
    ]


def test_the_sweep_places_each_order_once_and_a_rerun_adds_nothing(ls: Setting) -> None:
    first = ls.placed(items=3)
    second = ls.placed(items=2)
    inhouse = ls.world.placed(ls.session, items=2)
    ls.session.flush()

    placed = ls.sweep()
    again = ls.sweep()

    assert placed.placed == {first.id: 3, second.id: 2}
    assert placed.failed == {}
    assert again.placed == {}
    assert len(ls.stub.projects) == 2
    assert len(ls.stub.tasks) == 5
    titles = {p["title"] for p in ls.stub.projects.values()}
    assert titles == {project_title(o.id, "Sentiment of reviews") for o in (first, second)}
    assert ls.order(inhouse.id).external_ref is None
    assert all(ls.task_refs(first.id))


def test_a_project_created_before_a_crash_is_found_and_its_tasks_adopted(ls: Setting) -> None:
    order = ls.placed(items=3)
    # What a sweep that died after Label Studio's answers, before its commits, left there.
    project = ls.client.create_project(
        title=project_title(order.id, order.title), description="", schema=SENTIMENT
    )
    first = ls.session.scalars(
        select(Item).where(Item.order_id == order.id).order_by(Item.position)
    ).first()
    assert first is not None
    imported = ls.client.import_tasks(project.id, SENTIMENT, [NewTask(str(first.id), "a text")])

    report = ls.sweep()

    assert report.placed == {order.id: 2}
    assert list(ls.stub.projects) == [project.id]
    assert ls.order(order.id).external_ref == str(project.id)
    refs = ls.task_refs(order.id)
    assert imported.task_ids is not None
    assert refs[0] == str(imported.task_ids[0])
    assert len(ls.stub.tasks) == 3
    assert len(set(refs)) == 3


def test_a_failing_order_is_reported_and_placed_by_the_next_sweep_without_touching_others(
    ls: Setting,
) -> None:
    failing = ls.placed(items=2)
    fine = ls.placed(items=2)
    available = ls.world.available(ls.session)
    # The first order's project lookup answers 500.
    ls.stub.fail_next(Fault(status=500, detail="database is locked"))

    report = ls.sweep()

    assert report.placed == {fine.id: 2}
    assert "HTTP 500" in report.failed[failing.id]
    assert "database is locked" in report.failed[failing.id]
    assert ls.order(failing.id).external_ref is None
    assert ls.order(failing.id).status == OrderStatus.PLACED

    retried = ls.sweep()

    assert retried.placed == {failing.id: 2}
    assert retried.failed == {}
    assert len(ls.stub.projects) == 2
    assert ls.world.available(ls.session) == available
    assert verify_ledger(ls.session).ok


def test_annotations_are_recorded_once_across_sweeps_until_the_order_is_delivered(
    ls: Setting,
) -> None:
    order = ls.placed(items=2, redundancy=2)
    ls.sweep()
    (project,) = ls.stub.projects.values()
    # Label Studio gives each task to as many annotators as the order's redundancy.
    assert (project["maximum_annotations"], project["overlap_cohort_percentage"]) == (2, 100)
    first, second = (int(ref or 0) for ref in ls.task_refs(order.id))
    ls.stub.user_id = 21
    ls.client.create_annotation(first, _choices("positive"))
    ls.client.create_annotation(second, _choices("negative"))

    partly = ls.sweep()
    replayed = ls.sweep()
    in_progress = ls.order(order.id)
    ls.stub.user_id = 22
    ls.client.create_annotation(first, _choices("positive"))
    ls.client.create_annotation(second, _choices("neutral"))
    finished = ls.sweep()
    after = ls.sweep()

    assert (partly.recorded, replayed.recorded) == ({order.id: 2}, {order.id: 0})
    assert in_progress.status == OrderStatus.IN_PROGRESS
    assert in_progress.captured_micro == 2 * CREDIT
    assert finished.recorded == {order.id: 2}
    delivered = ls.order(order.id)
    assert delivered.status == OrderStatus.DELIVERED
    assert delivered.captured_micro == 4 * CREDIT == delivered.quoted_micro
    # A delivered order is not collected from again.
    assert after.recorded == {}


def test_an_image_order_goes_out_with_signed_links_that_serve_its_images(
    ls: Setting, tmp_path: Path
) -> None:
    settings = load_settings().model_copy(update={"public_url": "https://credits.example.org"})
    app = create_app(settings, session_factory=ls.factory)
    store = app.extensions[STORE_KEY] = blob_store_for_url(f"memory://ls-{tmp_path.name}")
    blob = store.put_stream([PNG], max_bytes=1024)
    order = _image_order(ls, blob.sha256)

    without = ls.sweep()
    report = ls.sweep(image_url=image_links_from_settings(settings, now=utcnow()))

    assert "needs the URL" in without.failed[order.id]
    assert report.placed == {order.id: 1}
    (task,) = ls.stub.tasks.values()
    path = task["data"]["image"].removeprefix("https://credits.example.org")
    assert path.startswith("/api/v1/labelling/items/")
    web: FlaskClient = app.test_client()
    served = web.get(path)
    assert served.status_code == 200
    assert served.data == PNG
    assert served.content_type == "image/png"
    forged = web.get(path[:-4] + "0000")
    assert forged.status_code == 403
    assert forged.content_type == "application/problem+json"

    # The session key rotates mid-order: Label Studio still holds links signed with
    # the old one, which serve while it is a fallback, and not once it is dropped.
    old_key = settings.secret_key.get_secret_value()
    new_key = SecretStr("rotated-" + old_key)
    rotating = settings.model_copy(
        update={"secret_key": new_key, "secret_key_fallbacks": SecretStr(old_key)}
    )
    rotated = settings.model_copy(update={"secret_key": new_key})
    for rotation, status in ((rotating, 200), (rotated, 403)):
        other = create_app(rotation, session_factory=ls.factory)
        other.extensions[STORE_KEY] = store
        assert other.test_client().get(path).status_code == status


def test_an_expired_image_link_is_refused(joined_session_factory: sessionmaker[Session]) -> None:
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


def _image_order(ls: Setting, sha256: str) -> OrderOut:
    draft = orders.create_order(
        ls.session,
        order=OrderIn.model_validate(
            {
                "project_id": ls.world.project_id,
                "vendor_id": ls.vendor.id,
                "title": "Cats or dogs",
                "label_schema": ANIMALS.model_dump(),
                "redundancy": 1,
            }
        ),
        items=[ItemIn(external_id="pet.png", blob_sha256=sha256, media_type="image/png")],
        source=OrderSource(kind=SourceKind.UPLOAD, name="1 images"),
        actor=ls.world.pi,
    )
    orders.quote_order(ls.session, order_id=draft.id, actor=ls.world.pi)
    placed = orders.place_order(ls.session, order_id=draft.id, actor=ls.world.pi)
    ls.session.flush()
    return placed


def _configured(ls: Setting) -> Settings:
    return load_settings().model_copy(
        update={"label_studio_url": ls.stub.url, "label_studio_token": SecretStr(TOKEN)}
    )


def test_the_embedded_chores_and_beat_run_the_sweep_only_when_label_studio_is_set(
    ls: Setting,
) -> None:
    by_chores = ls.placed(items=1)
    unset = Chores(ls.factory, load_settings())
    chores = Chores(ls.factory, _configured(ls))

    assert "label-studio" not in unset.run_due(now=0.0)
    assert "label-studio" in chores.run_due(now=0.0)
    assert ls.order(by_chores.id).external_ref is not None

    by_beat = ls.placed(items=2)
    celery = make_celery(_configured(ls), session_factory=ls.factory)
    report = celery.tasks[SYNC_LABEL_STUDIO].apply().get()

    assert "sync-label-studio" not in make_celery(load_settings()).conf.beat_schedule
    assert celery.conf.beat_schedule["sync-label-studio"]["task"] == SYNC_LABEL_STUDIO
    assert report["placed"] == {by_beat.id: 2}
    assert report["failed"] == {}


def test_the_cli_sweeps_and_names_what_failed(ls: Setting) -> None:
    order = ls.placed(items=2)
    obj = {"settings": _configured(ls), "session_factory": ls.factory}
    runner = CliRunner()
    ls.stub.fail_next(Fault(status=503, detail="maintenance"))

    failed = runner.invoke(main, ["labelling", "sync-label-studio"], obj=obj)
    done = runner.invoke(
        main, ["labelling", "sync-label-studio", "--order", str(order.id)], obj=obj
    )
    unset = runner.invoke(
        main,
        ["labelling", "sync-label-studio"],
        obj={"settings": load_settings(), "session_factory": ls.factory},
    )

    assert failed.exit_code == 1
    assert (
        f"order {order.id} failed: Label Studio failed to list projects: HTTP 503" in failed.output
    )
    assert done.exit_code == 0, done.output
    assert f"order {order.id}: 2 tasks imported" in done.output
    assert unset.exit_code == 1
    assert "Label Studio is not configured" in unset.output
