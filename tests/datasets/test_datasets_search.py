"""The catalogue's full-text search: FTS5 on SQLite, a tsvector with a GIN index on
PostgreSQL; both find by title, description, keyword and creator, by a word's start,
require every word, rank, and follow edits."""

from __future__ import annotations

from typing import Any

import pytest
from datasets_world import DATASHEET, ENERGY, METADATA, DatasetsWorld, build_world
from sqlalchemy import text
from sqlalchemy.orm import Session

from credits.datasets import publishing, queries, service
from credits.datasets.models import VersionState
from credits.datasets.search import fts5_query, search_words, tsquery


def _publish(session: Session, world: DatasetsWorld, **metadata: Any) -> int:
    draft = world.draft(session, title=metadata.get("title", "Untitled"))
    changes = METADATA | metadata
    service.update_metadata(session, version_id=draft.id, changes=changes, actor=world.pi)
    service.update_datasheet(session, version_id=draft.id, changes=DATASHEET, actor=world.pi)
    service.add_file(
        session, version_id=draft.id, name="a.csv", blob=world.put(b"x\n1\n"), actor=world.pi
    )
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    return draft.id


def _titles(session: Session, words: str, **filters: Any) -> list[str]:
    found = queries.search_versions(session, None, text=words, **filters)
    return [item.title for item in found.items]


@pytest.fixture
def world(any_session: Session) -> DatasetsWorld:
    return build_world(any_session)


@pytest.fixture
def catalogue(any_session: Session, world: DatasetsWorld) -> dict[str, int]:
    session = any_session
    return {
        "calving": _publish(
            session,
            world,
            title="Glacier calving events",
            description="Icebergs breaking off Greenland glaciers.",
            keywords=["glaciology"],
        ),
        "seaice": _publish(
            session,
            world,
            title="Sea ice thickness",
            description="Radar altimetry of sea ice; glacier margins excluded.",
            keywords=["cryosphere", "altimetry"],
            creators=[{"name": "Hopper, Grace"}],
        ),
        "birds": _publish(
            session,
            world,
            title="Seabird colonies",
            description="Counts from drone images.",
            keywords=["ornithology"],
        ),
    }


def test_search_finds_by_title_description_keyword_and_creator(
    any_session: Session, catalogue: dict[str, int]
) -> None:
    assert _titles(any_session, "calving") == ["Glacier calving events"]
    assert _titles(any_session, "drone") == ["Seabird colonies"]
    assert _titles(any_session, "altimetry") == ["Sea ice thickness"]
    assert _titles(any_session, "Hopper") == ["Sea ice thickness"]
    # Lovelace is the default creator of the other two.
    assert sorted(_titles(any_session, "lovelace")) == [
        "Glacier calving events",
        "Seabird colonies",
    ]


def test_every_word_is_required_and_each_may_be_a_prefix(
    any_session: Session, catalogue: dict[str, int]
) -> None:
    assert _titles(any_session, "GLAC calv") == ["Glacier calving events"]
    assert _titles(any_session, "glacier drone") == []
    assert _titles(any_session, "zzz") == []


def test_search_ranks_the_better_match_first(
    any_session: Session, catalogue: dict[str, int]
) -> None:
    # "glacier" is in the calving dataset's title and description, once in sea ice's.
    assert _titles(any_session, "glacier") == ["Glacier calving events", "Sea ice thickness"]


def test_search_combines_with_filters_and_counts(
    any_session: Session, world: DatasetsWorld, catalogue: dict[str, int]
) -> None:
    assert _titles(any_session, "glacier", keyword="CRYOSPHERE") == ["Sea ice thickness"]
    assert _titles(any_session, "glacier", license="mit") == []
    page = queries.search_versions(any_session, None, text="", per_page=2, page=2)
    assert (page.total, page.pages, len(page.items)) == (3, 2, 1)
    assert page.items[0].title == "Glacier calving events"  # newest first without words


def test_the_index_follows_edits_and_drafts_stay_hidden(
    any_session: Session, world: DatasetsWorld
) -> None:
    draft = world.draft(any_session, title="Permafrost cores")
    assert _titles(any_session, "permafrost") == []
    found = queries.search_versions(
        any_session, world.pi, text="permafrost", states=(VersionState.DRAFT,)
    )
    assert [item.title for item in found.items] == ["Permafrost cores"]
    service.update_metadata(
        any_session, version_id=draft.id, changes={"title": "Tundra cores"}, actor=world.pi
    )
    drafts = (VersionState.DRAFT,)
    assert (
        queries.search_versions(any_session, world.pi, text="permafrost", states=drafts).total == 0
    )
    assert queries.search_versions(any_session, world.pi, text="tundra", states=drafts).total == 1
    # list_versions (the API's) filters by the same index.
    listed = queries.list_versions(any_session, world.pi, text="tundra", states=drafts)
    assert [item.title for item in listed.items] == ["Tundra cores"]


def test_the_engines_own_index_answers(any_session: Session, catalogue: dict[str, int]) -> None:
    if any_session.get_bind().dialect.name == "postgresql":
        plan = "\n".join(
            any_session.scalars(
                text(
                    "EXPLAIN SELECT id FROM dataset_versions "
                    "WHERE search_vector @@ to_tsquery('simple', 'glacier:*')"
                )
            )
        )
        assert "search_vector" in plan
        indexed = any_session.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
            {"n": "ix_dataset_versions_search_vector"},
        )
        assert indexed is not None
        assert "gin" in indexed
    else:
        rows = any_session.execute(
            text(
                "SELECT rowid FROM dataset_versions_fts WHERE dataset_versions_fts MATCH 'calving'"
            )
        ).all()
        assert [row[0] for row in rows] == [catalogue["calving"]]


def test_query_words_are_letters_and_digits_only() -> None:
    words = search_words('Sentinel-1 "ice" OR ice* NEAR(a b) glacier_margin')
    assert words == ["sentinel", "1", "ice", "or", "near", "a", "b", "glacier", "margin"]
    assert fts5_query(["ice", "1"]) == '"ice"* "1"*'
    assert tsquery(["ice", "1"]) == "ice:* & 1:*"


def test_newest_only_keeps_one_version_per_dataset(
    any_session: Session, world: DatasetsWorld, catalogue: dict[str, int]
) -> None:
    first = queries.get_version(any_session, world.pi, catalogue["calving"])
    second = service.new_version(any_session, dataset_id=first.dataset_id, actor=world.pi)
    publishing.publish_version(any_session, version_id=second.id, actor=world.pi, energy=ENERGY)

    every = queries.search_versions(any_session, None, text="calving")
    newest = queries.search_versions(any_session, None, text="calving", newest_only=True)

    assert [item.number for item in every.items] == [2, 1]
    assert [(item.id, item.number) for item in newest.items] == [(second.id, 2)]
    assert newest.total == 1
