"""The annotator's keyboard in a real Chromium (static/annotate.js): multi-label keys toggle
and Enter sends, text spans are marked by selecting and pressing a label's key (offsets in
characters, an emoji included), S skips, and the page sends the seconds it was shown."""

from __future__ import annotations

from browser_helpers import LiveApp, screenshot, sign_in
from labelling_world import LabellingWorld, build_world
from playwright.sync_api import Page, expect
from sqlalchemy import select

from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import User
from credits.identity.service import set_password
from credits.labelling import orders
from credits.labelling.label_schema import LabelSchema, SchemaKind
from credits.labelling.models import Annotation, Assignment, SourceKind
from credits.labelling.schemas import ItemIn, OrderIn, OrderSource

pytest_plugins = ["browser_support"]

SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"
TEXT = "Ada 👩‍🔬 met Alan at NPL."


def _order(app: LiveApp, schema: LabelSchema, texts: list[str]) -> tuple[int, str]:
    """A placed in-house order of ``texts``, assigned to an annotator; (id, their e-mail)."""
    with session_scope(app.factory) as session:
        world: LabellingWorld = build_world(session)
        annotator = world.annotators[0]
        assert annotator.user_id is not None
        email = session.get_one(User, annotator.user_id).email
        set_password(session, email=email, password=PASSWORD, actor=SYSTEM)
        draft = orders.create_order(
            session,
            order=OrderIn(
                project_id=world.project_id,
                vendor_id=world.vendor.id,
                title="Keyboard",
                label_schema=schema,
                redundancy=1,
            ),
            items=[ItemIn(external_id=f"t{n}", text=text) for n, text in enumerate(texts)],
            source=OrderSource(kind=SourceKind.UPLOAD, name="texts.csv"),
            actor=world.pi,
        )
        orders.quote_order(session, order_id=draft.id, actor=world.pi)
        orders.place_order(session, order_id=draft.id, actor=world.pi)
        orders.assign_annotators(
            session, order_id=draft.id, user_ids=[annotator.user_id], actor=world.pi
        )
    return draft.id, email


def _annotations(app: LiveApp, order_id: int) -> list[Annotation]:
    with session_scope(app.factory) as session:
        rows = session.scalars(
            select(Annotation).where(Annotation.order_id == order_id).order_by(Annotation.id)
        ).all()
        session.expunge_all()
        return list(rows)


def _keys_heard(page: Page) -> None:
    """Waits until the page's script listens for keys (a key pressed before is lost)."""
    expect(page.locator("#annotate-form")).to_have_attribute("data-annotate-ready", "true")


def test_multi_label_keys_toggle_and_enter_sends_with_the_seconds_shown(
    page: Page, live_app: LiveApp
) -> None:
    schema = LabelSchema(kind=SchemaKind.MULTI_LABEL, labels=["funny", "sad", "long"])
    order_id, email = _order(live_app, schema, ["First text.", "Second text."])
    sign_in(page, live_app, email, PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Annotate").click()
    page.locator(f'[data-testid="annotate-open-{order_id}"]').click()
    expect(page.locator("#annotate-form")).to_have_attribute("data-annotate-kind", "multi_label")
    _keys_heard(page)
    for key in ("1", "3", "2", "2"):  # sad toggled on, then off again
        page.keyboard.press(key)
    expect(page.locator('[data-annotate-label="funny"]')).to_be_checked()
    expect(page.locator('[data-annotate-label="sad"]')).not_to_be_checked()
    page.wait_for_timeout(300)
    screenshot(page, "annotate-multi-label")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    [annotation] = _annotations(live_app, order_id)
    assert annotation.value["labels"] == ["funny", "long"]
    assert annotation.seconds is not None and 0.25 <= annotation.seconds < 60


def test_a_selected_span_is_marked_by_its_labels_key_in_characters(
    page: Page, live_app: LiveApp
) -> None:
    schema = LabelSchema(kind=SchemaKind.TEXT_SPANS, labels=["PER", "ORG"])
    order_id, email = _order(live_app, schema, [TEXT])
    sign_in(page, live_app, email, PASSWORD)
    page.goto(f"{live_app.url}/annotate/{order_id}")
    start = TEXT.index("Alan")
    # Select "Alan" by its offsets in the text node (JavaScript counts UTF-16 units).
    page.locator("#annotate-text").evaluate(
        """(element, [from, to]) => {
            const range = document.createRange();
            range.setStart(element.firstChild, from);
            range.setEnd(element.firstChild, to);
            const selection = window.getSelection();
            selection.removeAllRanges();
            selection.addRange(range);
        }""",
        [
            len(TEXT[:start].encode("utf-16-le")) // 2,
            len(TEXT[: start + 4].encode("utf-16-le")) // 2,
        ],
    )
    _keys_heard(page)
    page.keyboard.press("1")
    expect(page.locator("#annotate-span-list li")).to_have_count(1)
    expect(page.locator("#annotate-span-list li")).to_contain_text("PER: \u201cAlan\u201d")
    screenshot(page, "annotate-text-spans")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    [annotation] = _annotations(live_app, order_id)
    assert annotation.value["spans"] == [{"start": start, "end": start + 4, "label": "PER"}]
    assert TEXT[start : start + 4] == "Alan"


def test_s_skips_the_item_and_the_next_one_is_served(page: Page, live_app: LiveApp) -> None:
    schema = LabelSchema(kind=SchemaKind.SINGLE_LABEL, labels=["yes", "no"])
    order_id, email = _order(live_app, schema, ["One.", "Two."])
    sign_in(page, live_app, email, PASSWORD)
    page.goto(f"{live_app.url}/annotate/{order_id}")
    first = page.locator("#annotate-text").inner_text()
    _keys_heard(page)
    with page.expect_navigation():
        page.keyboard.press("s")
    expect(page.locator("#annotate-text")).not_to_have_text(first)
    _keys_heard(page)
    with page.expect_navigation():
        page.keyboard.press("2")
    expect(page.locator("#annotate-done")).to_contain_text("Nothing left for you")
    with session_scope(live_app.factory) as session:
        statuses = sorted(session.scalars(select(Assignment.status)).all())
    assert statuses == ["done", "released"]
    [annotation] = _annotations(live_app, order_id)
    assert annotation.value["labels"] == ["no"]
