"""UI access rows for the annotator's pages: only users holding the annotator role have a
queue, so every persona of the matrix (none is an annotator) gets a 404 and a visitor is
sent to sign in (a form posted without a session: 400). The ids are any of the world's:
the pages refuse before looking anything up. tests/ui/test_ui_annotate.py covers what
annotators themselves reach."""

from __future__ import annotations

from ui_matrix import UiRow, expect

NOT_AN_ANNOTATOR = expect(404)
NOT_AN_ANNOTATOR_POST = expect(404, anonymous=400)
ASSIGNMENT = {"order_id": "project_a", "assignment_id": "job_a"}

ROWS = [
    UiRow("GET", "/annotate", NOT_AN_ANNOTATOR),
    UiRow("GET", "/annotate/<int:order_id>", NOT_AN_ANNOTATOR, {"order_id": "project_a"}),
    UiRow(
        "POST",
        "/annotate/<int:order_id>/assignments/<int:assignment_id>",
        NOT_AN_ANNOTATOR_POST,
        ASSIGNMENT,
        form=lambda _: {"label": "positive", "seconds": "1.5"},
    ),
    UiRow(
        "POST",
        "/annotate/<int:order_id>/assignments/<int:assignment_id>/skip",
        NOT_AN_ANNOTATOR_POST,
        ASSIGNMENT,
    ),
    UiRow(
        "GET",
        "/annotate/assignments/<int:assignment_id>/image",
        NOT_AN_ANNOTATOR,
        {"assignment_id": "job_a"},
    ),
]
