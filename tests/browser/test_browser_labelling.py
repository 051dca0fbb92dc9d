"""A labelling order in a real Chromium, from the form to a dataset version: a researcher
uploads a CSV, quotes and places an in-house order with two annotators per item and
assigns two annotators; each annotator signs in and labels every item with the
keyboard; the researcher sees the agreement, accepts, and follows the link to the
draft dataset version, which lists the annotations file and names the order."""

from __future__ import annotations

import re
from pathlib import Path

from browser_helpers import LiveApp, screenshot, sign_in
from labelling_world import LabellingWorld, build_world
from playwright.sync_api import Page, expect
from sqlalchemy import select

from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import User
from credits.identity.service import set_password
from credits.labelling.models import Order
from credits.labelling.quality import order_quality

pytest_plugins = ["browser_support"]
SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"
ITEMS = ["r1", "r2", "r3"]
TEXTS = {"A wonderful film.": "r1", "A dreadful film.": "r2", "A film.": "r3"}
CSV = "id,text\n" + "".join(f"{item},{text}\n" for text, item in TEXTS.items())
KEYS = {"positive": "1", "negative": "2"}


def _world(app: LiveApp) -> tuple[LabellingWorld, dict[str, str]]:
    """The labelling world, its researcher's and annotators' e-mails with a password."""
    with session_scope(app.factory) as session:
        world = build_world(session)
        emails = {
            name: session.get_one(User, who.user_id).email
            for name, who in (
                ("pi", world.pi),
                ("first", world.annotators[0]),
                ("second", world.annotators[1]),
            )
        }
        for email in emails.values():
            set_password(session, email=email, password=PASSWORD, actor=SYSTEM)
    return world, emails


def _place_order(page: Page, app: LiveApp, world: LabellingWorld, tmp_path: Path) -> int:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Labelling").click()
    page.get_by_role("link", name="New labelling order").click()
    page.get_by_role("radio", name=re.compile(re.escape(world.vendor.name))).check()
    page.get_by_label("Title", exact=True).fill("Sentiment of film reviews")
    page.get_by_label("Instructions for annotators", exact=True).fill(
        "Is the review positive or negative?"
    )
    page.get_by_label("Task", exact=True).select_option("single_label")
    page.get_by_label("Labels (one per line)", exact=True).fill("positive\nnegative")
    page.get_by_label("Annotators per item", exact=True).fill("2")
    page.get_by_label("A CSV or JSON Lines file of texts", exact=True).check()
    upload = tmp_path / "reviews.csv"
    upload.write_text(CSV)
    page.get_by_label("Items file (CSV or JSON Lines)", exact=True).set_input_files(str(upload))
    page.get_by_role("button", name="Create draft order").click()
    page.wait_for_url(re.compile(r"/labelling/orders/\d+$"))
    order_id = int(page.url.rsplit("/", 1)[-1])
    expect(page.get_by_test_id("order-status")).to_have_text("draft")
    page.get_by_role("button", name="Quote").click()
    # 3 items x 2 annotators x 1 credit per item.
    expect(page.get_by_test_id("order-quote")).to_contain_text("6 items · 6 credits")
    page.get_by_role("button", name=re.compile("Place order")).click()
    expect(page.get_by_test_id("order-status")).to_have_text("placed")
    expect(page.get_by_test_id("order-held")).to_have_text("6")
    return order_id


def _assign(page: Page, emails: dict[str, str]) -> None:
    page.get_by_label(re.compile("Assign annotators")).fill(
        f"{emails['first']}, {emails['second']}"
    )
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_test_id("annotators")).to_contain_text(emails["first"])
    expect(page.get_by_test_id("annotators")).to_contain_text(emails["second"])
    expect(page.get_by_test_id("agreement")).to_have_text("Not enough annotations yet.")


def _label_everything(page: Page, app: LiveApp, order_id: int, answers: dict[str, str]) -> None:
    """Labels every item served on the annotator page by its label's key (1 positive,
    2 negative); each item is served once."""
    page.goto(f"{app.url}/annotate/{order_id}")
    seen = []
    while page.locator("#annotate-done").count() == 0:
        item = TEXTS[page.locator("#annotate-text").inner_text().strip()]
        assert item not in seen, f"{item} was served twice"
        seen.append(item)
        with page.expect_navigation():
            page.keyboard.press(KEYS[answers[item]])
    assert sorted(seen) == ITEMS
    expect(page.locator("#annotate-done")).to_contain_text("You labelled 3 items")


def test_an_order_goes_from_the_form_through_two_annotators_to_a_dataset_version(
    page: Page, live_app: LiveApp, tmp_path: Path
) -> None:
    world, emails = _world(live_app)
    sign_in(page, live_app, emails["pi"], PASSWORD)
    order_id = _place_order(page, live_app, world, tmp_path)
    _assign(page, emails)
    screenshot(page, "labelling-order-placed")
    page.get_by_role("button", name="Sign out").click()

    # Both say "positive" for r1 and "negative" for r3; they disagree on r2.
    answers = {"first": {"r1": "positive", "r2": "positive", "r3": "negative"}}
    answers["second"] = {"r1": "positive", "r2": "negative", "r3": "negative"}
    for name in ("first", "second"):
        sign_in(page, live_app, emails[name], PASSWORD)
        _label_everything(page, live_app, order_id, answers[name])
        page.get_by_role("button", name="Sign out").click()

    sign_in(page, live_app, emails["pi"], PASSWORD)
    page.goto(f"{live_app.url}/labelling/orders/{order_id}")
    expect(page.get_by_test_id("order-status")).to_have_text("delivered")
    expect(page.get_by_test_id("order-progress")).to_contain_text("3 of 3 items")
    with session_scope(live_app.factory) as session:
        alpha = order_quality(session, world.pi, order_id=order_id).alpha
    assert alpha is not None
    expect(page.get_by_test_id("agreement")).to_contain_text(f"{alpha:.3f}")
    expect(page.get_by_text("No gold item answered yet.")).to_be_visible()
    screenshot(page, "labelling-order-delivered")
    page.get_by_role("button", name="Accept the work").click()
    expect(page.get_by_test_id("order-status")).to_have_text("settled")
    expect(page.get_by_test_id("order-captured")).to_have_text("6")

    page.get_by_test_id("delivered-version").click()
    page.wait_for_url(re.compile(r"/datasets/versions/[0-9a-f-]{36}$"))
    expect(page.get_by_text(re.compile("draft", re.I)).first).to_be_visible()
    with session_scope(live_app.factory) as session:
        order = session.scalars(select(Order).where(Order.id == order_id)).one()
        assert order.delivered_version_id is not None
    expect(page.get_by_test_id("files")).to_contain_text(f"labels-order-{order_id}.jsonl")
    expect(page.get_by_test_id("provenance-labelling")).to_contain_text(
        f"Labelling order {order_id}: 6 labelling credits"
    )
    screenshot(page, "labelling-delivered-version")


def test_ops_add_a_vendor_and_its_price_and_researchers_are_offered_it(
    page: Page, live_app: LiveApp
) -> None:
    world, emails = _world(live_app)
    with session_scope(live_app.factory) as session:
        ops_email = session.get_one(User, world.ops.user_id).email
        set_password(session, email=ops_email, password=PASSWORD, actor=SYSTEM)
    sign_in(page, live_app, ops_email, PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Labelling").click()
    expect(page.get_by_role("heading", name="Labelling vendors", level=1)).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Acme Labels")
    page.get_by_label("Adapter", exact=True).select_option("invoice")
    page.get_by_label("multi label").check()
    page.get_by_role("button", name="Add vendor").click()
    expect(page.get_by_role("heading", name=re.compile("Acme Labels"))).to_be_visible()

    page.get_by_label("Vendor", exact=True).select_option(label="Acme Labels")
    page.get_by_label("Unit", exact=True).select_option("label")
    page.get_by_label("Credits per unit").fill("0.04")
    page.get_by_label("Fee (%)").fill("2.5")
    page.get_by_role("button", name="Add price version").click()
    expect(page.get_by_text("0.04 credits per label + 2.5 % fee")).to_be_visible()
    page.get_by_role("link", name="Disputes").first.click()
    expect(page.get_by_text("No order is disputed.")).to_be_visible()
    screenshot(page, "labelling-ops-vendors")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, live_app, emails["pi"], PASSWORD)
    page.goto(f"{live_app.url}/labelling/orders/new")
    acme = page.get_by_role("radio", name=re.compile("Acme Labels"))
    expect(acme).to_be_enabled()
    expect(page.locator("label", has=acme)).to_contain_text("needs an estimate of labels per item")
