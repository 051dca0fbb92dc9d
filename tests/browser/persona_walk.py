"""Every page of every persona, in a real browser: the demo seeded with some use,
then, for each persona, the pages reachable from its start by links, as a person
would click through them (the walk of tests/ui/test_ui_readable_amounts.py, in
Chromium). The phone and accessibility tests run their checks on each page.

One page per route instance: a link that differs only in its query string (a
filter, a page of a list) is the page already seen, so a walk stays a few dozen
pages per persona.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from browser_helpers import FLAVOUR, LiveApp, sign_in
from playwright.sync_api import Page
from sqlalchemy import select

from credits.db import session_scope, utcnow
from credits.demo import seed_demo
from credits.grants.models import Allocation
from credits.identity.service import actor_for_email
from credits.jobs.runtime import run_cycle
from credits.jobs.service import submit_job
from credits.jobs.spec import JobSpec
from credits.settings import load_settings

MAX_PAGES = 60
SKIPPED = ("/logout", "/api/", "/ui/static/", "/auth/", "/healthz", "/readyz")
# Files and documents, not pages.
NOT_PAGES = (".log", ".csv", ".json", ".jsonld", ".txt", ".md", ".xml", "SHA256SUMS")


@dataclass(frozen=True)
class Persona:
    name: str
    email: str | None  # None: a visitor who is not signed in
    password: str
    start: str


def seed(app: LiveApp) -> list[Persona]:
    """The demo, a job that ran and a queued one; the personas that walk it (and a visitor)."""
    with session_scope(app.factory) as session:
        result = seed_demo(session, flavour=FLAVOUR, gpus_per_node=8)
        researcher = actor_for_email(session, "demo-researcher@example.org")
        allocation = session.scalars(select(Allocation)).first()
        assert allocation is not None
        for name, seconds in (("finished", "1"), ("waiting", "3600")):
            spec = JobSpec(
                name=name,
                image="python:3.12",
                command=["python", "-c", "print('a line of output')"],
                flavour=FLAVOUR,
                gpus=1,
                max_runtime_seconds=7200,
                labels={"credits.dev/simulated-duration-s": seconds},
            )
            submit_job(
                session,
                project_id=allocation.project_id,
                spec=spec,
                actor=researcher,
                max_runtime_cap=7 * 86400,
                now=utcnow(),
            )
    run_cycle(app.factory, app.executor, load_settings())
    personas = [Persona(login.role, login.email, login.password, "/") for login in result.logins]
    return [*personas, Persona("visitor", None, "", "/datasets")]


def _links(page: Page) -> list[str]:
    hrefs: list[str] = page.eval_on_selector_all(
        "a[href]", "links => links.map(link => link.getAttribute('href'))"
    )
    found = []
    for href in hrefs:
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or not href.startswith("/"):
            continue
        if href.startswith(SKIPPED) or parts.path.endswith(NOT_PAGES):
            continue
        found.append(parts.path)
    return found


def walk(page: Page, app: LiveApp, persona: Persona) -> Iterator[str]:
    """Signs the persona in and visits its pages one by one; yields each path once the
    page has loaded, for the caller to check (it may resize the page meanwhile)."""
    if persona.email is not None:
        sign_in(page, app, persona.email, persona.password)
    seen: set[str] = set()
    queue = deque([persona.start, "/login"] if persona.email is None else [persona.start])
    while queue and len(seen) < MAX_PAGES:
        path = queue.popleft()
        if path in seen:
            continue
        seen.add(path)
        answer = page.goto(f"{app.url}{path}")
        assert answer is not None and answer.status < 500, f"{persona.name}: {path}"
        if "text/html" not in (answer.headers.get("content-type") or ""):
            continue
        yield path
        queue.extend(link for link in _links(page) if link not in seen)
