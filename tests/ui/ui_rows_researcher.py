"""UI access rows for the researcher's pages: programs, proposals, projects and jobs."""

from __future__ import annotations

from typing import Any

from api_world import FUNDER_P, OPS, RESEARCHER_A, RESEARCHER_B, World
from ui_matrix import UiRow, only

PROJECT_A = {"project_id": "project_a"}
JOB_A = {"job_id": "job_a"}
# Ops read every project and job; researcher A is PI of project A; everyone else
# (researcher B included) gets a 404, exactly as for a project that does not exist.
A_AND_OPS = only(OPS, RESEARCHER_A)
POST_A_AND_OPS = only(OPS, RESEARCHER_A, anonymous=400)
RESEARCHERS = only(RESEARCHER_A, RESEARCHER_B)


def _job_form(world: World) -> dict[str, Any]:
    return {
        "action": "submit",
        "name": "matrix",
        "image": "python:3.12",
        "command": "python -c 'print(1)'",
        "flavour": world.flavour,
        "gpus": "1",
        "max_runtime_minutes": "10",
    }


def _proposal_form(world: World) -> dict[str, Any]:
    return {"action": "save", "project_id": str(world.project_a), "title": "Matrix"}


ROWS = [
    UiRow("GET", "/programs/open", RESEARCHERS),
    UiRow("GET", "/programs/<int:program_id>/apply", RESEARCHERS, {"program_id": "program_p"}),
    # A draft program is not public: a 404 for researchers as for everyone else.
    UiRow("GET", "/programs/<int:program_id>/apply", only(), {"program_id": "program_p_draft"}),
    # Researcher B may not draft for project A: the form comes back with the refusal.
    UiRow(
        "POST",
        "/programs/<int:program_id>/apply",
        only(RESEARCHER_A, researcher_b=422, anonymous=400),
        {"program_id": "program_p"},
        form=_proposal_form,
    ),
    UiRow(
        "GET",
        "/applications/<int:proposal_id>",
        only(RESEARCHER_A),
        {"proposal_id": "proposal_draft"},
    ),
    UiRow(
        "POST",
        "/applications/<int:proposal_id>",
        only(RESEARCHER_A, anonymous=400),
        {"proposal_id": "proposal_draft"},
        form=lambda _: {"action": "save", "title": "Renamed"},
    ),
    # The first POST is the confirmation page; it withdraws nothing.
    UiRow(
        "POST",
        "/applications/<int:proposal_id>/withdraw",
        POST_A_AND_OPS,
        {"proposal_id": "proposal_in_review"},
        form=lambda _: {"reason": "funded elsewhere"},
    ),
    # The PI (or ops) writes the progress report the pending tranche waits for.
    UiRow(
        "POST",
        "/tranches/<int:tranche_id>/report",
        POST_A_AND_OPS,
        {"tranche_id": "tranche"},
        form=lambda _: {"progress_report": "Half the runs are done."},
    ),
    # Researchers create projects with themselves as PI; ops open the form too, but
    # ops is no researcher, so the service's refusal comes back on the form.
    UiRow("GET", "/projects/new", only(OPS, RESEARCHER_A, RESEARCHER_B)),
    UiRow(
        "POST",
        "/projects/new",
        only(RESEARCHER_A, RESEARCHER_B, ops=422, anonymous=400),
        form=lambda _: {"title": "Matrix", "field_of_science": "Physics"},
    ),
    UiRow("GET", "/projects/<int:project_id>", A_AND_OPS, PROJECT_A),
    UiRow("GET", "/projects/<int:project_id>/members", A_AND_OPS, PROJECT_A),
    UiRow(
        "POST",
        "/projects/<int:project_id>/members",
        POST_A_AND_OPS,
        PROJECT_A,
        form=lambda _: {"email": "researcher_b@example.org", "role": "member"},
    ),
    # The first POST is the confirmation page; it removes nobody.
    UiRow(
        "POST",
        "/projects/<int:project_id>/members/<int:user_id>/remove",
        POST_A_AND_OPS,
        {"project_id": "project_a", "user_id": "member_a"},
    ),
    UiRow(
        "GET", "/projects/<int:project_id>", only(OPS, RESEARCHER_B), {"project_id": "project_b"}
    ),
    UiRow(
        "GET", "/projects/<int:project_id>/report.csv", only(OPS, RESEARCHER_A, FUNDER_P), PROJECT_A
    ),
    UiRow("GET", "/projects/<int:project_id>/jobs/new", A_AND_OPS, PROJECT_A),
    UiRow("POST", "/projects/<int:project_id>/jobs/new", POST_A_AND_OPS, PROJECT_A, form=_job_form),
    UiRow("GET", "/jobs", only(OPS, RESEARCHER_A, RESEARCHER_B)),
    UiRow("GET", "/jobs/<int:job_id>", A_AND_OPS, JOB_A),
    UiRow("GET", "/jobs/<int:job_id>/state.json", A_AND_OPS, JOB_A),
    UiRow("GET", "/jobs/<int:job_id>/logs.json", A_AND_OPS, JOB_A),
    UiRow("GET", "/jobs/<int:job_id>/output.log", A_AND_OPS, JOB_A),
    UiRow("POST", "/jobs/<int:job_id>/cancel", POST_A_AND_OPS, JOB_A),
]
