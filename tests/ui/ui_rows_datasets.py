"""UI access rows for the public dataset catalogue: anyone reads published versions,
project A's members and ops its draft (everyone else, signed in or not, a 404)."""

from __future__ import annotations

from api_world import OPS, RESEARCHER_A
from ui_matrix import OK, UiRow, expect, only

EVERYONE = expect(OK, anonymous=OK)
# The draft of project A: researcher A (its PI) and ops; anonymous too gets a 404, not
# the sign-in page, as for a version that does not exist.
DRAFT = only(OPS, RESEARCHER_A, anonymous=404)

ROWS = [
    UiRow("GET", "/datasets", EVERYONE),
    # The concept id redirects to version 1, the newest published one.
    UiRow("GET", "/datasets/<uuid:concept_id>", EVERYONE, {"concept_id": "dataset_concept"}),
    UiRow(
        "GET",
        "/datasets/versions/<uuid:public_id>",
        EVERYONE,
        {"public_id": "dataset_published"},
    ),
    UiRow("GET", "/datasets/versions/<uuid:public_id>", DRAFT, {"public_id": "dataset_draft"}),
    UiRow(
        "GET",
        "/datasets/<uuid:concept_id>/v<int:number>",
        EVERYONE,
        {"concept_id": "dataset_concept", "number": "dataset_published_number"},
    ),
    UiRow(
        "GET",
        "/datasets/<uuid:concept_id>/v<int:number>",
        DRAFT,
        {"concept_id": "dataset_concept", "number": "dataset_draft_number"},
    ),
]
