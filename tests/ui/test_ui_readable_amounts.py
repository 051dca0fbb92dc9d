"""No page of the demo, for any persona, and no CSV export shows a raw amount.

Every page each demo persona can reach from the home page (following the
links, as a person would) is rendered with the Flask test client after some
use (a job held for 7 minutes, an award starting in 8 days, an adjustment of
1.500001 credits): none shows
a micro-credit amount such as ``1000000000``, an amount with micro-credit
decimals (``1.500001``), an ISO timestamp with microseconds, or a person as
``user:4``; the CSV exports name money columns in credits and write no time
with microseconds.
"""

from __future__ import annotations

import html
import io
import re
from collections import deque
from csv import reader
from datetime import date, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.demo import DOMAIN, seed_demo
from credits.grants import awards, reviews
from credits.grants.allocations import adjust_allocation
from credits.grants.models import Allocation, Proposal, ProposalStatus
from credits.identity.models import User
from credits.identity.service import actor_for
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.service import submit_job
from credits.jobs.spec import JobSpec
from credits.ledger.models import Currency
from credits.settings import load_settings

FLAVOUR = "demo-gpu"
PERSONAS = ("researcher", "reviewer", "funder", "ops")
MAX_PAGES = 150
# Digits a hyphen follows are a UUID's first group (its hex may all be decimal), not an amount.
RAW_MICRO = re.compile(r"(?<![\w.,:/#+-])\d{7,}(?![\w.,-])")
MICRO_DECIMALS = re.compile(r"(?<![\w.])\d+\.\d{5,6}(?![\w.])")
MICROSECONDS = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\.\d{1,6}")
RAW_CELL = re.compile(r"-?\d{7,}")
USER_LABEL = re.compile(r"\buser:\d+")
SKIPPED = ("/logout", "/api/", "/ui/static/", "/auth/")


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session], session: Session) -> Flask:
    executor = SimulatedExecutor(
        [NodeCapacity(name="node-0", flavour=FLAVOUR, gpus=4)], clock=utcnow
    )
    seed_demo(session, flavour=FLAVOUR, gpus_per_node=4)
    _use(session)
    return create_app(load_settings(), session_factory=joined_session_factory, executor=executor)


def _actor(session: Session, role: str):  # type: ignore[no-untyped-def]
    user = session.scalars(select(User).where(User.email == f"demo-{role}@{DOMAIN}")).one()
    return actor_for(user)


def _use(session: Session) -> None:
    """A job held for 7 minutes (0.116667 credits), an award of 333.333333 credits that
    starts in 8 days and an adjustment of 1.500001 credits."""
    researcher = _actor(session, "researcher")
    allocation = session.scalars(select(Allocation)).first()
    assert allocation is not None
    spec = JobSpec(
        name="train",
        image="python:3.12",
        command=["python", "-c", "print(1)"],
        flavour=FLAVOUR,
        gpus=1,
        max_runtime_seconds=7 * 60,
    )
    submit_job(
        session,
        project_id=allocation.project_id,
        spec=spec,
        actor=researcher,
        max_runtime_cap=7 * 24 * 3600,
    )
    waiting = session.scalars(
        select(Proposal).where(Proposal.status != ProposalStatus.AWARDED.value)
    ).one()
    reviews.submit_review(
        session,
        proposal_id=waiting.id,
        actor=_actor(session, "reviewer"),
        scores={"merit": 5, "feasibility": 5},
        comment="Fine.",
    )
    later = utcnow() + timedelta(days=8, microseconds=123_456)
    awards.award_proposal(
        session,
        proposal_id=waiting.id,
        actor=_actor(session, "funder"),
        key="readable-later",
        amounts={"gpu": 333_333_333},
        starts_at=later,
        ends_at=later + timedelta(days=90),
    )
    adjust_allocation(
        session,
        allocation_id=allocation.id,
        amount=1_500_001,
        actor=_actor(session, "ops"),
        reason="a correction",
        key="readable-amounts",
    )
    session.flush()


def _text(page: str) -> str:
    """What a person reads: the page without scripts, styles and tags."""
    page = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", page)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _links(page: str) -> list[str]:
    found = []
    for href in re.findall(r'href="([^"]+)"', page):
        target = html.unescape(href)
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not target.startswith("/"):
            continue
        if target.startswith(SKIPPED) or target.endswith(".log"):
            continue
        found.append(target.split("#")[0])
    return found


def _walk(client: FlaskClient) -> dict[str, str]:
    """Every page reachable from the home page by links: path → body."""
    seen: dict[str, str] = {}
    queue = deque(["/"])
    while queue and len(seen) < MAX_PAGES:
        path = queue.popleft()
        if path in seen:
            continue
        response = client.get(path)
        assert response.status_code < 500, path
        body = response.get_data(as_text=True)
        seen[path] = body
        if response.mimetype == "text/html":
            queue.extend(link for link in _links(body) if link not in seen)
    return seen


def _user(session: Session, role: str) -> User:
    return session.scalars(select(User).where(User.email == f"demo-{role}@{DOMAIN}")).one()


def _client(app: Flask, session: Session, role: str) -> FlaskClient:
    client = app.test_client()
    user_id = session.scalars(select(User.id).where(User.email == f"demo-{role}@{DOMAIN}")).one()
    sign_in_as(client, user_id)
    return client


def _problems(path: str, body: str, csv: bool) -> list[str]:
    text = body if csv else _text(body)
    found = []
    if csv:
        cells = [cell for row in reader(io.StringIO(body)) for cell in row]
        found += [
            f"{path}: raw micro-credits {cell!r}" for cell in cells if RAW_CELL.fullmatch(cell)
        ]
    checks = [("microseconds", MICROSECONDS), ("a user label", USER_LABEL)]
    if not csv:  # a CSV's credits are exact decimals, machine-readable
        checks += [("raw micro-credits", RAW_MICRO), ("micro-credit decimals", MICRO_DECIMALS)]
    for name, pattern in checks:
        found += [
            f"{path}: {name} {m.group()!r} in {text[max(0, m.start() - 80) : m.end()]!r}"
            for m in pattern.finditer(text)
        ]
    return found


@pytest.mark.parametrize("role", PERSONAS)
def test_no_page_or_export_of_a_persona_shows_raw_amounts_or_times(
    app: Flask, session: Session, role: str
) -> None:
    pages = _walk(_client(app, session, role))
    assert len(pages) > 3, sorted(pages)
    problems = [
        problem
        for path, body in pages.items()
        for problem in _problems(path, body, csv=path.endswith(".csv"))
    ]
    assert not problems, "\n".join(problems)


def test_the_walk_reaches_the_exports_and_would_see_a_raw_amount(
    app: Flask, session: Session
) -> None:
    researcher = _walk(_client(app, session, "researcher"))
    funder = _walk(_client(app, session, "funder"))
    exports = [path for path in {**researcher, **funder} if path.endswith(".csv")]
    assert any("/projects/" in path for path in exports)
    assert any("/programs/" in path for path in exports)
    assert _problems("x", "<td>1000000000</td> 1.500001 2026-12-02T18:07:48.830379", csv=False)
    assert _problems("x", "<td>user:4</td>", csv=False)
    assert _problems("x.csv", "section,value\nbalance,1000000000\n", csv=True)


def test_a_job_the_credits_cannot_cover_is_refused_in_credits(app: Flask, session: Session) -> None:
    client = app.test_client()
    user_id = session.scalars(
        select(User.id).where(User.email == f"demo-researcher@{DOMAIN}")
    ).one()
    sign_in_as(client, user_id, csrf_token="readable")
    project_id = session.scalars(select(Allocation.project_id)).first()
    form = {
        "csrf_token": "readable",
        "action": "submit",
        "name": "big",
        "image": "python:3.12",
        "command": "python -c 'print(1)'",
        "flavour": FLAVOUR,
        "gpus": "4",
        "max_runtime_minutes": str(7 * 24 * 60),
    }
    first = client.post(f"/projects/{project_id}/jobs/new", data=form)
    assert first.status_code == 302, _text(first.get_data(as_text=True))[-600:]
    second = client.post(f"/projects/{project_id}/jobs/new", data=form | {"name": "bigger"})
    text = " ".join(_text(second.get_data(as_text=True)).split())
    assert second.status_code == 422
    assert (
        "Not enough credits: this needs 672 GPU credits and only 329.383334 GPU credits are"
        " available. Nothing was submitted." in text
    ), text[-800:]


def test_an_exhaustion_past_the_allocations_end_is_not_shown_as_a_date(app: Flask) -> None:
    ends = utcnow() + timedelta(days=180)
    lines = [SimpleNamespace(currency=Currency.GPU, expires_at=ends)]
    template = app.jinja_env.from_string("{{ when|exhaustion(lines|latest_end(currency)) }}")
    far = template.render(when=date(2443, 10, 10), lines=lines, currency=Currency.GPU)
    near = (utcnow() + timedelta(days=30)).date()
    assert html.unescape(far) == "not within the allocation's period"
    assert template.render(when=near, lines=lines, currency=Currency.GPU) == near.isoformat()


def test_states_read_as_words_and_runtimes_as_durations(app: Flask) -> None:
    badge = app.jinja_env.globals["badge"]
    assert str(badge("in_review")) == '<span class="badge badge-in_review">in review</span>'
    render = app.jinja_env.from_string("{{ s|duration }} · {{ m|minutes }} · {{ g|gpus }}").render
    assert render(s=9_000, m=10_080, g=500) == "2 h 30 min · 7 days · 500 GPUs"


def test_the_audit_log_finds_a_person_by_name_or_email_and_names_them(
    app: Flask, session: Session
) -> None:
    ops = _client(app, session, "ops")
    by_name = ops.get("/ops/audit?actor=olu ops").get_data(as_text=True)
    by_email = ops.get(f"/ops/audit?actor=demo-ops@{DOMAIN}").get_data(as_text=True)
    nobody = ops.get("/ops/audit?actor=Nobody Atall").get_data(as_text=True)
    for page in (by_name, by_email):
        assert "ledger.adjust" in page
        assert f"Olu Ops &lt;demo-ops@{DOMAIN}&gt;" in page
        assert "Frances Funder" not in page
    assert "No events match these filters." in nobody


def test_ops_see_a_projects_pi_by_name_and_email(app: Flask, session: Session) -> None:
    page = _client(app, session, "ops").get("/ops/projects").get_data(as_text=True)
    pi = _user(session, "researcher")
    assert f'{pi.name} <span class="muted">{pi.email}</span>' in page
