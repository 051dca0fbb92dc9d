"""The public dataset catalogue: search and filters, landing pages with citations, hashes,
alternate links and JSON-LD, tombstones, deprecation, drafts for members alone."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from api_world import OPS, RESEARCHER_A, RESEARCHER_B, World, build_world, world_executor
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.datasets import publishing, service
from credits.datasets.models import DatasetDoi, DatasetProvenance, DatasetVersion
from credits.datasets.schemas import DATASHEET_SECTIONS, VersionOut
from credits.db import utcnow
from credits.identity.actor import Actor
from credits.identity.service import actor_for_email
from credits.reports.energy import EnergyPolicy
from credits.settings import load_settings
from credits.storage import StoredBlob

ENERGY = EnergyPolicy.from_values(pue=1.0, grid_g_per_kwh=0.0)
JSON_LD = re.compile(r'<script type="application/ld\+json">(.*?)</script>', re.S)
DATA = b"thickness_m\n1.5\n"


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


@pytest.fixture
def world(session: Session) -> World:
    return build_world(session)


def _actor(session: Session, persona: str) -> Actor:
    return actor_for_email(session, f"{persona}@example.org")


def _publish(
    session: Session, world: World, title: str, *, micro: int = 0, **metadata: Any
) -> VersionOut:
    """A published version of project A; ``micro`` > 0 adds a job and program P's
    allocation to its provenance, straight into the table (figures as given)."""
    pi = _actor(session, RESEARCHER_A)
    draft = service.create_dataset(session, project_id=world.project_a, title=title, actor=pi)
    changes = {
        "description": f"{title}: measured.",
        "creators": [{"name": "Lovelace, Ada"}],
        "license": "CC-BY-4.0",
        "keywords": ["ice"],
    } | metadata
    service.update_metadata(session, version_id=draft.id, changes=changes, actor=pi)
    sheet = {section: f"{section} text" for section in DATASHEET_SECTIONS}
    service.update_datasheet(session, version_id=draft.id, changes=sheet, actor=pi)
    blob = StoredBlob(sha256=hashlib.sha256(DATA).hexdigest(), size=len(DATA))
    service.add_file(session, version_id=draft.id, name="data/t.csv", blob=blob, actor=pi)
    published = publishing.publish_version(session, version_id=draft.id, actor=pi, energy=ENERGY)
    if micro:
        figures = {
            "charged_micro": 2 * micro,
            "gpu_seconds_micro": 3600 * micro,
            "kwh_micro": micro // 4,
            "kg_co2e_micro": micro // 10,
        }
        common = {"version_id": draft.id, "recorded_by": "tests", "recorded_at": utcnow()}
        session.add(DatasetProvenance(kind="job", job_id=world.job_a, explicit=True, **common))
        session.add(
            DatasetProvenance(
                kind="allocation",
                allocation_id=world.allocation,
                program_id=world.program_p,
                explicit=False,
                **common,
            )
        )
        session.flush()
        job_line = session.query(DatasetProvenance).filter_by(job_id=world.job_a).one()
        for name, value in figures.items():
            setattr(job_line, name, value)
        session.flush()
    return published


def _client(app: Flask, world: World, persona: str | None = None) -> FlaskClient:
    client = app.test_client()
    if persona is not None:
        sign_in_as(client, world.user_ids[persona])
    return client


def _titles(client: FlaskClient, query: str = "") -> list[str]:
    page = client.get(f"/datasets{query}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    listing = html.split('data-testid="datasets"', 1)
    if len(listing) == 1:
        return []
    return re.findall(r'<h3><a href="/datasets/versions/[0-9a-f-]+">([^<]*)</a>', listing[1])


def test_a_visitor_sees_the_catalogue_in_the_header_and_only_published_versions(
    app: Flask, session: Session, world: World
) -> None:
    _publish(session, world, "Sea ice thickness")
    pi = _actor(session, RESEARCHER_A)
    service.create_dataset(session, project_id=world.project_a, title="Secret draft", actor=pi)
    client = _client(app, world)

    page = client.get("/datasets").get_data(as_text=True)

    assert '<a href="/datasets" aria-current="page">Datasets</a>' in page
    assert "Sign in" in page
    # The world's "Ice cores" has a published v1 and a draft v2: v1 alone is listed.
    assert _titles(client) == ["Sea ice thickness", "Ice cores"]
    assert "Secret draft" not in page
    # A member reads drafts on their pages, but the catalogue lists published versions.
    assert _titles(_client(app, world, RESEARCHER_A)) == ["Sea ice thickness", "Ice cores"]
    assert "Datasets" in _client(app, world, RESEARCHER_B).get("/").get_data(as_text=True)


def test_search_finds_by_title_keyword_description_and_creator(
    app: Flask, session: Session, world: World
) -> None:
    _publish(
        session,
        world,
        "Sea ice thickness",
        keywords=["altimetry"],
        creators=[{"name": "Hopper, Grace"}],
        description="Radar freeboard over the Arctic.",
    )
    client = _client(app, world)

    assert _titles(client, "?q=thickness") == ["Sea ice thickness"]
    assert _titles(client, "?q=ALTIM") == ["Sea ice thickness"]
    assert _titles(client, "?q=hopper") == ["Sea ice thickness"]
    assert _titles(client, "?q=freeboard+arctic") == ["Sea ice thickness"]
    assert _titles(client, "?q=lovelace") == ["Ice cores"]
    assert sorted(_titles(client, "?q=ice")) == ["Ice cores", "Sea ice thickness"]
    page = client.get("/datasets?q=nothing-like-this").get_data(as_text=True)
    assert "No published dataset matches." in page
    assert "0 datasets" in page


def test_filters_by_licence_keyword_and_program_and_pages(
    app: Flask, session: Session, world: World
) -> None:
    _publish(session, world, "Sea ice thickness", license="MIT", keywords=["altimetry"], micro=1)
    for n in range(21):
        _publish(session, world, f"Bulk {n:02}")
    client = _client(app, world)

    assert _titles(client, "?license=mit") == ["Sea ice thickness"]
    assert _titles(client, "?keyword=Altimetry") == ["Sea ice thickness"]
    assert _titles(client, f"?program={world.program_p}") == ["Sea ice thickness"]
    assert _titles(client, f"?program={world.program_q}") == []
    assert _titles(client, "?license=MIT&keyword=ice") == []
    page = client.get("/datasets").get_data(as_text=True)
    assert "23 datasets" in page
    assert "Page 1 of 2" in page
    assert len(_titles(client)) == 20
    assert _titles(client, "?page=2") == ["Bulk 00", "Sea ice thickness", "Ice cores"]
    # The program filter offers the programs behind published versions.
    assert f'<option value="{world.program_p}"' in page
    # Nonsense in the query string is ignored, not an error.
    assert client.get("/datasets?page=-3&program=x").status_code == 200


def test_the_landing_page_has_citations_hashes_alternates_json_ld_and_provenance(
    app: Flask, session: Session, world: World
) -> None:
    version = _publish(session, world, "Sea ice </script><b>thickness</b>", micro=1_000_000)
    client = _client(app, world)

    response = client.get(f"/datasets/versions/{version.public_id}")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    base = f"http://localhost/datasets/versions/{version.public_id}"
    assert f'<link rel="alternate" type="application/ld+json" href="{base}/croissant.json"' in html
    assert f'type="application/vnd.datacite.datacite+json" href="{base}/datacite.json"' in html
    assert f'href="{base}/SHA256SUMS"' in html
    assert f'href="{base}/files/data/t.csv" download' in html
    assert hashlib.sha256(DATA).hexdigest() in html
    assert "@misc{" in html
    assert "Lovelace, A. (" in html
    assert "[Data set]" in html
    assert "<b>thickness</b>" not in html
    for section in ("Motivation", "Known biases"):
        assert section in html
    assert "Produced with 1.0 GPU-hours (2 credits, 0.2 kWh, 0.1 kg CO₂e)" in html
    assert "from program " in html
    blocks = JSON_LD.findall(html)
    assert len(blocks) == 1
    assert "<" not in blocks[0]
    document = json.loads(blocks[0])
    assert document["@type"] == "Dataset"
    assert document["name"] == "Sea ice </script><b>thickness</b>"
    assert document["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    assert document["distribution"][0]["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert document["creator"][0]["name"] == "Lovelace, Ada"
    # Only the data block is inline: no script runs from the page itself.
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert all('src="/' in tag or 'type="application/ld+json"' in tag for tag in scripts)


def test_the_concept_and_a_version_number_redirect_to_the_landing_page(
    app: Flask, session: Session, world: World
) -> None:
    client = _client(app, world)

    latest = client.get(f"/datasets/{world.dataset_concept}")
    numbered = client.get(f"/datasets/{world.dataset_concept}/v1")

    assert latest.status_code == 302
    assert latest.headers["Location"].endswith(f"/datasets/versions/{world.dataset_published}")
    assert numbered.headers["Location"] == latest.headers["Location"]
    assert client.get(f"/datasets/{world.dataset_concept}/v9").status_code == 404
    assert client.get("/datasets/00000000-0000-0000-0000-000000000000").status_code == 404


def test_a_deprecated_version_points_at_its_successor(
    app: Flask, session: Session, world: World
) -> None:
    pi = _actor(session, RESEARCHER_A)
    draft = session.query(DatasetVersion).filter_by(public_id=world.dataset_draft).one()
    first = session.query(DatasetVersion).filter_by(public_id=world.dataset_published).one()
    publishing.publish_version(session, version_id=draft.id, actor=pi, energy=ENERGY)
    publishing.deprecate_version(
        session, version_id=first.id, actor=pi, successor_version_id=draft.id, note="v2 is better."
    )
    client = _client(app, world)

    html = client.get(f"/datasets/versions/{world.dataset_published}").get_data(as_text=True)

    assert 'data-testid="deprecated-banner"' in html
    assert "v2 is better." in html
    assert f'href="/datasets/versions/{world.dataset_draft}" data-testid="successor"' in html
    assert (
        client.get(f"/datasets/{world.dataset_concept}")
        .headers["Location"]
        .endswith(world.dataset_draft)
    )
    assert _titles(client) == ["Ice cores"]  # v2 alone: v1 is deprecated


def test_the_catalogue_lists_each_datasets_newest_published_version_once(
    app: Flask, session: Session, world: World
) -> None:
    pi = _actor(session, RESEARCHER_A)
    draft = session.query(DatasetVersion).filter_by(public_id=world.dataset_draft).one()
    service.update_metadata(
        session, version_id=draft.id, changes={"title": "Ice cores, revised"}, actor=pi
    )
    publishing.publish_version(session, version_id=draft.id, actor=pi, energy=ENERGY)
    client = _client(app, world)

    assert _titles(client) == ["Ice cores, revised"]
    assert _titles(client, "?q=cores") == ["Ice cores, revised"]
    html = client.get(f"/datasets/versions/{world.dataset_published}").get_data(as_text=True)
    versions = html.split('data-testid="versions"', 1)[1]
    assert f'href="/datasets/versions/{world.dataset_draft}">v2</a>' in versions
    assert "<strong>v1</strong>" in versions


def test_a_taken_down_version_is_a_tombstone_with_its_citation_and_no_files(
    app: Flask, session: Session, world: World
) -> None:
    version = _publish(session, world, "Sea ice thickness")
    publishing.take_down_version(
        session, version_id=version.id, actor=_actor(session, OPS), reason="Court order 12/26."
    )
    client = _client(app, world)

    response = client.get(f"/datasets/versions/{version.public_id}")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-testid="tombstone"' in html
    assert "Court order 12/26." in html
    assert "Sea ice thickness" in html
    assert "@misc{" in html
    assert hashlib.sha256(DATA).hexdigest() not in html
    assert "/files/" not in html
    assert "SHA256SUMS" not in html
    assert not JSON_LD.search(html)
    assert "Sea ice thickness" not in _titles(client)


def test_a_draft_is_not_found_for_visitors_and_outsiders_and_bannered_for_members(
    app: Flask, session: Session, world: World
) -> None:
    url = f"/datasets/versions/{world.dataset_draft}"

    assert _client(app, world).get(url).status_code == 404
    assert _client(app, world, RESEARCHER_B).get(url).status_code == 404
    for persona in (RESEARCHER_A, OPS):
        response = _client(app, world, persona).get(url)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert 'data-testid="draft-banner"' in html
        assert '<meta name="robots" content="noindex">' in html
        assert not JSON_LD.search(html)
        assert "<form" not in html.split("</header>", 1)[1]  # nothing to edit here


def test_the_project_page_lists_its_datasets_and_drafts(
    app: Flask, session: Session, world: World
) -> None:
    html = (
        _client(app, world, RESEARCHER_A).get(f"/projects/{world.project_a}").get_data(as_text=True)
    )

    section = html.split('data-testid="project-datasets"', 1)[1].split("</section>", 1)[0]
    assert f'href="/datasets/versions/{world.dataset_published}"' in section
    assert f'href="/datasets/versions/{world.dataset_draft}"' in section
    assert "badge-draft" in section
    assert "badge-published" in section


def test_a_version_with_a_findable_doi_is_cited_by_it(
    app: Flask, session: Session, world: World
) -> None:
    version = session.query(DatasetVersion).filter_by(public_id=world.dataset_published).one()
    doi = f"10.5072/{world.dataset_published}"
    session.add(
        DatasetDoi(
            version_id=version.id,
            doi=doi,
            datacite_state="findable",
            pending=False,
            attempts=0,
            created_at=utcnow(),
        )
    )
    session.flush()

    html = (
        _client(app, world)
        .get(f"/datasets/versions/{world.dataset_published}")
        .get_data(as_text=True)
    )

    assert f'href="https://doi.org/{doi}" data-testid="doi"' in html
    assert re.search(r"\bdoi\s*= \{" + re.escape(doi) + r"\}", html)
    document = json.loads(JSON_LD.findall(html)[0])
    assert document["identifier"][0] == f"https://doi.org/{doi}"
    assert document["citation"].endswith(f"https://doi.org/{doi}")
