"""UI access rows for the reviewer pages: only an assigned reviewer without a conflict
reaches a proposal; everyone else, the conflicted reviewer included, gets 404."""

from __future__ import annotations

from ui_matrix import UiRow, only

SCORE = {"score_merit": "4", "score_fit": "3", "comment": "Sound plan."}

ROWS = [
    UiRow("GET", "/reviews", only("reviewer", "conflicted_reviewer")),
    UiRow(
        "GET", "/reviews/<int:proposal_id>", only("reviewer"), {"proposal_id": "proposal_in_review"}
    ),
    UiRow("GET", "/reviews/<int:proposal_id>", only(), {"proposal_id": "proposal_draft"}),
    UiRow(
        "POST",
        "/reviews/<int:proposal_id>/score",
        only("reviewer", anonymous=400),
        {"proposal_id": "proposal_in_review"},
        form=lambda _: SCORE,
    ),
    UiRow(
        "POST",
        "/reviews/<int:proposal_id>/conflict",
        only("reviewer", anonymous=400),
        {"proposal_id": "proposal_in_review"},
        form=lambda _: {"reason": "co-author"},
    ),
]
