"""UI access rows for the funder pages: a program and its proposals are for its owners
and ops; another funder, a researcher or a reviewer gets 404."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from api_world import World
from ui_matrix import UiRow, only

from credits.db import utcnow

PROGRAM = "/funder/programs/<int:program_id>"
PROPOSAL = "/funder/proposals/<int:proposal_id>"
P = {"program_id": "program_p"}
IN_REVIEW = {"proposal_id": "proposal_in_review"}


def _program(_: World) -> dict[str, Any]:
    today = utcnow().date()
    return {
        "name": "Matrix call",
        "description": "A call.",
        "opens_at": today.isoformat(),
        "closes_at": (today + timedelta(days=30)).isoformat(),
        "criteria": "Merit",
        "min_reviewers": "1",
        "min_mean_score": "3",
        "initial_share_percent": "",
    }


def _award(_: World) -> dict[str, Any]:
    today = utcnow().date()
    return {
        "amount_gpu": "1",
        "starts_at": today.isoformat(),
        "ends_at": (today + timedelta(days=30)).isoformat(),
        "override_reason": "urgent",
        "key": "matrix-award",
    }


ROWS = [
    UiRow("GET", "/funder/programs", only("ops", "funder_p", "funder_q")),
    # Ops may create a program only for named funder owners; the form names none.
    UiRow(
        "POST",
        "/funder/programs",
        only("funder_p", "funder_q", ops=422, anonymous=400),
        form=_program,
    ),
    UiRow("GET", PROGRAM, only("ops", "funder_p"), P),
    UiRow("GET", PROGRAM, only("ops", "funder_p"), {"program_id": "program_p_draft"}),
    UiRow("GET", PROGRAM, only("ops", "funder_q"), {"program_id": "program_q"}),
    UiRow("GET", PROGRAM + "/edit", only("ops", "funder_p"), {"program_id": "program_p_draft"}),
    UiRow(
        "POST",
        PROGRAM + "/edit",
        only("ops", "funder_p", anonymous=400),
        {"program_id": "program_p_draft"},
        form=_program,
    ),
    UiRow(
        "POST",
        PROGRAM + "/fund",
        only("ops", "funder_p", anonymous=400),
        P,
        form=lambda _: {"currency": "gpu", "amount": "10", "reason": "top-up", "key": "m-fund"},
    ),
    UiRow(
        "POST",
        PROGRAM + "/open",
        only("ops", "funder_p", anonymous=400),
        {"program_id": "program_p_draft"},
    ),
    UiRow("POST", PROGRAM + "/close", only("ops", "funder_p", anonymous=400), P),
    UiRow("GET", PROGRAM + "/dashboard", only("ops", "funder_p"), P),
    UiRow("GET", PROGRAM + "/report.csv", only("ops", "funder_p"), P),
    UiRow("GET", PROPOSAL, only("ops", "funder_p"), IN_REVIEW),
    # A draft is nobody's to decide, not even its program's owner's.
    UiRow("GET", PROPOSAL, only(), {"proposal_id": "proposal_draft"}),
    UiRow(
        "POST",
        PROPOSAL + "/reviewers",
        only("ops", "funder_p", anonymous=400),
        IN_REVIEW,
        form=lambda world: {"reviewer": str(world.reviewer_spare)},
    ),
    UiRow(
        "POST", PROPOSAL + "/award", only("ops", "funder_p", anonymous=400), IN_REVIEW, form=_award
    ),
    UiRow(
        "POST",
        PROPOSAL + "/reject",
        only("ops", "funder_p", anonymous=400),
        IN_REVIEW,
        form=lambda _: {"reject_reason": "out of scope", "reject_override": "urgent"},
    ),
    # Only the program's owners and ops release; the API answers researcher A (who
    # reads the allocation) 403, but funder pages are 404 to anyone without the role.
    UiRow(
        "POST",
        "/funder/tranches/<int:tranche_id>/release",
        only("ops", "funder_p", anonymous=400),
        {"tranche_id": "tranche"},
        form=lambda _: {"progress_report": "Half the runs are done.", "key": "matrix-release"},
    ),
]
