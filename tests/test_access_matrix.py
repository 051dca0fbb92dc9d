"""Who reaches what: every route of the URL map, called by every kind of caller.

Each row of ``MATRIX`` is one (method, rule) with a target, a valid body and
the answer each persona of tests/api_world.py must get: ``OK`` for any 2xx,
otherwise the exact status (401 anonymous, 404 for an object out of reach,
403 for a wrong role or for an object the caller may see but not change).
A route of the URL map without a row fails :func:`test_every_route_has_a_row`,
so every new route must say who may call it; a row may repeat a route with
another target (program P and its draft, project A and B). A new persona goes
in tests/api_world.py and gets the default answer of every row until named.

Isolation: every request runs inside its own SAVEPOINT, rolled back after the
response, so one persona's successful POST (an archive, a new owner) never
changes what the next persona meets; each persona sees the world exactly as
:func:`build_world` left it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from api_world import (
    ANONYMOUS,
    CONFLICTED_REVIEWER,
    FUNDER_P,
    FUNDER_Q,
    OPS,
    PERSONAS,
    RESEARCHER_A,
    RESEARCHER_B,
    REVIEWER,
    World,
    build_world,
    job_body,
    program_body,
    world_executor,
)
from conftest import joined_factory, rolled_back_session
from datasets_api_world import UPLOAD_NAME, with_datasets
from flask import Flask
from flask.testing import FlaskClient
from labelling_api_world import order_body, with_labelling
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.db import utcnow
from credits.settings import load_settings
from credits.storage import blob_store_for_url
from credits.transparency.witness import generate_cosigner

OK = "2xx"
Expect = int | str
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
_ARGUMENT = re.compile(r"<(?:\w+(?:\([^)]*\))?:)?(?P<name>\w+)>")

RESEARCHERS = (RESEARCHER_A, RESEARCHER_B)
FUNDERS = (FUNDER_P, FUNDER_Q)


def expect(default: Expect, **answers: Expect) -> dict[str, Expect]:
    """``default`` for every persona not named; anonymous gets 401 unless named."""
    unknown = set(answers) - set(PERSONAS)
    assert not unknown, f"unknown personas {unknown}"
    return {ANONYMOUS: 401} | dict.fromkeys(PERSONAS[1:], default) | answers


def only(*personas: str, others: Expect = 404, **answers: Expect) -> dict[str, Expect]:
    """``OK`` for ``personas``, ``others`` for the rest (anonymous: 401)."""
    return expect(others, **dict.fromkeys(personas, OK), **answers)


class Fixed(str):
    """A URL argument given as is, rather than the name of a World field."""

    __slots__ = ()


@dataclass(frozen=True)
class Row:
    """One call: ``path`` names the World field (or a Fixed value) each URL argument takes."""

    method: str
    rule: str
    answers: dict[str, Expect]
    path: dict[str, str] = field(default_factory=dict)
    body: Callable[[World], Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def id(self) -> str:
        target = ",".join(f"{name}={value}" for name, value in self.path.items())
        return f"{self.method} {self.rule}" + (f" [{target}]" if target else "")


def _flavour_body(_: World) -> dict[str, Any]:
    return {
        "name": "h100-80gb",
        "node_label_value": "NVIDIA-H100-80GB-HBM3",
        "gpu_memory_gb": 80,
        "gpus_per_node": 8,
    }


def _rate_body(_: World) -> dict[str, Any]:
    starts = utcnow() + timedelta(days=1)
    return {"micro_credits_per_gpu_hour": 3_000_000, "effective_from": starts.isoformat()}


def _program_body(world: World) -> dict[str, Any]:
    """A new call for funder Q: ops must name an owner, a funder becomes one as well."""
    values = program_body(name="New call", owner_ids=[world.user_ids[FUNDER_Q]])
    return values | {key: values[key].isoformat() for key in ("opens_at", "closes_at")}


def _stranger_cosignature() -> dict[str, Any]:
    cosigner = generate_cosigner("stranger.example/w")
    text = "localhost/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    return {
        "checkpoint": text + "\n— localhost/log AAAAAAAA\n",
        "signature": cosigner.cosign(text, 1).line().rstrip("\n"),
        "key": cosigner.verifier.key_string(),
    }


def _usage_body(world: World) -> dict[str, Any]:
    end = utcnow() - timedelta(minutes=1)
    record = {
        "source": "matrix-meter",
        "record_id": "r1",
        "project_id": world.project_a,
        "currency": "gpu",
        "quantity": "60",
        "unit": "gpu_second",
        "start": (end - timedelta(minutes=1)).isoformat(),
        "end": end.isoformat(),
        "resource": world.flavour,
    }
    return {"records": [record]}


PUBLIC = expect(OK, anonymous=OK)
NOBODY_YET = expect(404, anonymous=404)
ANY_TOKEN = expect(OK)
# Ops read every ledger account; project members their project's; funders the
# accounts their programs fund.
# Account A is funded straight from the mint, by no program: a funder does not read it.
ACCOUNT_A = only(OPS, RESEARCHER_A)
# Program P is open: its owner and ops run it, researchers see the call but may
# not change it, reviewers and the other funder do not see it at all.
ADMINISTER_P = only(OPS, FUNDER_P, **dict.fromkeys(RESEARCHERS, 403))
# A draft is seen by its owners and ops alone.
DRAFT_P = only(OPS, FUNDER_P)
# Project A: researcher A is its PI; nobody else but ops is on it.
PROJECT_A = only(OPS, RESEARCHER_A)
OPS_ON_PROJECT_A = only(OPS, **{RESEARCHER_A: 403})
POOL_CHANGE = expect(403, ops=OK)
# Proposal in review: project A's members and ops see it, program P's owner once it
# was submitted, an assigned reviewer until they declare a conflict (then 404).
SEES_IN_REVIEW = only(OPS, RESEARCHER_A, FUNDER_P, REVIEWER, **{CONFLICTED_REVIEWER: 404})
DECIDE_IN_REVIEW = only(OPS, FUNDER_P, **dict.fromkeys((RESEARCHER_A, REVIEWER), 403))
EDIT_IN_REVIEW = only(OPS, RESEARCHER_A, **dict.fromkeys((FUNDER_P, REVIEWER), 403))
# Reviewing is the assigned reviewer's alone: to anyone else, ops included, the
# proposal is out of their reviewing reach, so it answers 404 (reviews._own_assignment).
REVIEW_IN_REVIEW = only(REVIEWER, **{CONFLICTED_REVIEWER: 404})
IN_REVIEW = {"proposal_id": "proposal_in_review"}
# Datasets: the catalogue is public; a draft is its project's members' and ops'
# (anyone else gets 404, as for a missing version); a public version is changed by
# them too (others 403), taken down and verified by ops alone.
DRAFT_DS = {"version_id": "ds_draft_id"}
PUBLISHED_DS = {"version_id": "ds_published_id"}
PUBLIC_DS = {"public_id": "ds_published_uuid"}
DS_DRAFT = only(OPS, RESEARCHER_A, anonymous=404)
DS_CHANGE_DRAFT = only(OPS, RESEARCHER_A)
DS_CHANGE_PUBLISHED = only(OPS, RESEARCHER_A, others=403)
DS_OPS = expect(403, ops=OK)
DS_UPLOAD = {"version_id": "ds_draft_id", "upload_id": "ds_upload"}
# Labelling: any token reads the vendors and their prices, ops change them; project A's
# orders are its researchers' and ops' (anyone else gets 404); ops alone resolve a
# dispute and mark an invoice order delivered (403 to anyone else, before any lookup).
LB = "/api/v1/labelling"
VENDOR = {"vendor_id": "lb_vendor"}
LB_OPS = expect(403, ops=OK)


def _order(target: str) -> dict[str, str]:
    return {"order_id": target}


MATRIX: tuple[Row, ...] = (
    # Probes and the document: anyone.
    Row("GET", "/healthz", PUBLIC),
    Row("GET", "/readyz", PUBLIC),
    # The test client comes from the loopback address; a token guards it from elsewhere
    # (tests/observability/test_metrics_endpoint.py).
    Row("GET", "/metrics", PUBLIC),
    Row("GET", "/api/v1/openapi.json", PUBLIC),
    Row("GET", "/api/v1/me", ANY_TOKEN),
    # Ledger.
    # Any token lists the accounts it may read by id (tests/test_list_get_parity.py).
    Row("GET", "/api/v1/accounts", ANY_TOKEN),
    Row("GET", "/api/v1/accounts/<int:account_id>", ACCOUNT_A, {"account_id": "account_a"}),
    Row("GET", "/api/v1/accounts/<int:account_id>/balance", ACCOUNT_A, {"account_id": "account_a"}),
    Row(
        "GET",
        "/api/v1/accounts/<int:account_id>/transfers",
        ACCOUNT_A,
        {"account_id": "account_a"},
    ),
    # GPU pool: any token reads, ops change.
    Row("GET", "/api/v1/pool/flavours", ANY_TOKEN),
    Row("POST", "/api/v1/pool/flavours", POOL_CHANGE, body=_flavour_body),
    Row("GET", "/api/v1/pool/flavours/<name>", ANY_TOKEN, {"name": "flavour"}),
    Row(
        "PATCH",
        "/api/v1/pool/flavours/<name>",
        POOL_CHANGE,
        {"name": "flavour"},
        body=lambda _: {"max_checkpoint_grace_seconds": 120},
    ),
    Row("GET", "/api/v1/pool/flavours/<name>/rates", ANY_TOKEN, {"name": "flavour"}),
    Row(
        "POST",
        "/api/v1/pool/flavours/<name>/rates",
        POOL_CHANGE,
        {"name": "flavour"},
        body=_rate_body,
    ),
    Row("GET", "/api/v1/pool/status", ANY_TOKEN),
    # Usage from outside meters needs a token that names the meter scope; the world's
    # tokens are unscoped, so every one is refused (tests/metering covers meter tokens).
    Row("POST", "/api/v1/usage/records", expect(403), body=_usage_body),
    # GPU jobs: project A's members and ops submit, read and cancel project A's jobs.
    Row(
        "POST",
        "/api/v1/projects/<int:project_id>/jobs",
        PROJECT_A,
        {"project_id": "project_a"},
        body=lambda _: job_body(),
        headers={"Idempotency-Key": "matrix-job"},
    ),
    Row("GET", "/api/v1/jobs", ANY_TOKEN),
    Row("GET", "/api/v1/jobs/<int:job_id>", PROJECT_A, {"job_id": "job_a"}),
    Row("GET", "/api/v1/jobs/<int:job_id>/logs", PROJECT_A, {"job_id": "job_a"}),
    Row("GET", "/api/v1/jobs/<int:job_id>/logs/download", PROJECT_A, {"job_id": "job_a"}),
    Row("POST", "/api/v1/jobs/<int:job_id>/cancel", PROJECT_A, {"job_id": "job_a"}),
    # Programs.
    Row("GET", "/api/v1/programs", ANY_TOKEN),
    Row(
        "POST",
        "/api/v1/programs",
        only(OPS, *FUNDERS, others=403),
        body=_program_body,
    ),
    Row(
        "GET",
        "/api/v1/programs/<int:program_id>",
        only(OPS, FUNDER_P, *RESEARCHERS),
        {"program_id": "program_p"},
        note="an open call: researchers see it, reviewers and other funders do not",
    ),
    Row("GET", "/api/v1/programs/<int:program_id>", DRAFT_P, {"program_id": "program_p_draft"}),
    Row(
        "GET",
        "/api/v1/programs/<int:program_id>",
        only(OPS, FUNDER_Q),
        {"program_id": "program_q"},
    ),
    Row(
        "PATCH",
        "/api/v1/programs/<int:program_id>",
        DRAFT_P,
        {"program_id": "program_p_draft"},
        body=lambda _: {"description": "A new description."},
    ),
    Row(
        "POST", "/api/v1/programs/<int:program_id>/open", DRAFT_P, {"program_id": "program_p_draft"}
    ),
    Row(
        "POST", "/api/v1/programs/<int:program_id>/close", ADMINISTER_P, {"program_id": "program_p"}
    ),
    Row(
        "POST",
        "/api/v1/programs/<int:program_id>/owners",
        ADMINISTER_P,
        {"program_id": "program_p"},
        body=lambda world: {"user_id": world.user_ids[FUNDER_Q]},
    ),
    Row(
        "POST",
        "/api/v1/programs/<int:program_id>/fund",
        ADMINISTER_P,
        {"program_id": "program_p"},
        body=lambda _: {"currency": "gpu", "amount_micro": 5_000_000, "reason": "top-up"},
        headers={"Idempotency-Key": "matrix-fund"},
    ),
    # Projects.
    Row("GET", "/api/v1/projects", ANY_TOKEN),
    Row(
        "POST",
        "/api/v1/projects",
        only(OPS, RESEARCHER_A, others=403),
        body=lambda world: {
            "title": "Glacier flow",
            "field_of_science": "Glaciology",
            "pi_user_id": world.user_ids[RESEARCHER_A],
        },
        note="researcher A names themselves as PI; researcher B may not name A",
    ),
    Row("GET", "/api/v1/projects/<int:project_id>", PROJECT_A, {"project_id": "project_a"}),
    Row(
        "GET",
        "/api/v1/projects/<int:project_id>",
        only(OPS, RESEARCHER_B),
        {"project_id": "project_b"},
    ),
    Row(
        "POST",
        "/api/v1/projects/<int:project_id>/members",
        PROJECT_A,
        {"project_id": "project_a"},
        body=lambda world: {"user_id": world.user_ids[RESEARCHER_B], "role": "member"},
    ),
    Row(
        "DELETE",
        "/api/v1/projects/<int:project_id>/members/<int:user_id>",
        PROJECT_A,
        {"project_id": "project_a", "user_id": "member_a"},
    ),
    Row(
        "POST",
        "/api/v1/projects/<int:project_id>/suspend",
        OPS_ON_PROJECT_A,
        {"project_id": "project_a"},
        body=lambda _: {"reason": "audit"},
    ),
    Row(
        "POST",
        "/api/v1/projects/<int:project_id>/unsuspend",
        OPS_ON_PROJECT_A,
        {"project_id": "project_a_suspended"},
        body=lambda _: {"reason": "audit done"},
    ),
    Row(
        "POST",
        "/api/v1/projects/<int:project_id>/archive",
        PROJECT_A,
        {"project_id": "project_a"},
        body=lambda _: {"reason": "finished"},
    ),
    # Proposals and reviews.
    Row("GET", "/api/v1/proposals", ANY_TOKEN),
    Row(
        "POST",
        "/api/v1/proposals",
        PROJECT_A,
        body=lambda world: {
            "program_id": world.program_p,
            "project_id": world.project_a,
            "kind": "new",
            "title": "Firn density",
        },
        note="the project decides who drafts: others do not see project A",
    ),
    Row("GET", "/api/v1/proposals/<int:proposal_id>", SEES_IN_REVIEW, IN_REVIEW),
    Row(
        "GET",
        "/api/v1/proposals/<int:proposal_id>",
        PROJECT_A,
        {"proposal_id": "proposal_draft"},
        note="a draft: not yet the program owner's to see",
    ),
    Row(
        "PATCH",
        "/api/v1/proposals/<int:proposal_id>",
        PROJECT_A,
        {"proposal_id": "proposal_draft"},
        body=lambda _: {"title": "Ice sheet models, revised"},
    ),
    Row(
        "POST",
        "/api/v1/proposals/<int:proposal_id>/submit",
        PROJECT_A,
        {"proposal_id": "proposal_draft"},
    ),
    Row(
        "POST",
        "/api/v1/proposals/<int:proposal_id>/withdraw",
        EDIT_IN_REVIEW,
        IN_REVIEW,
        body=lambda _: {"reason": "resubmitting"},
    ),
    Row(
        "POST",
        "/api/v1/proposals/<int:proposal_id>/reviewers",
        DECIDE_IN_REVIEW,
        IN_REVIEW,
        body=lambda world: {"user_id": world.reviewer_spare},
    ),
    Row(
        "POST",
        "/api/v1/proposals/<int:proposal_id>/conflict",
        REVIEW_IN_REVIEW,
        IN_REVIEW,
        body=lambda _: {"reason": "same department"},
    ),
    Row(
        "PUT",
        "/api/v1/proposals/<int:proposal_id>/review",
        REVIEW_IN_REVIEW,
        IN_REVIEW,
        body=lambda _: {"scores": {"merit": 4, "fit": 5}, "comment": "Sound plan."},
    ),
    Row(
        "GET",
        "/api/v1/proposals/<int:proposal_id>/reviews",
        DECIDE_IN_REVIEW,
        IN_REVIEW,
    ),
    Row(
        "POST",
        "/api/v1/proposals/<int:proposal_id>/award",
        DECIDE_IN_REVIEW,
        IN_REVIEW,
        body=lambda _: {
            "amounts": {"gpu": 1_000_000},
            "starts_at": utcnow().isoformat(),
            "ends_at": (utcnow() + timedelta(days=90)).isoformat(),
            "override_reason": "urgent",
        },
        headers={"Idempotency-Key": "matrix-award"},
    ),
    Row(
        "POST",
        "/api/v1/proposals/<int:proposal_id>/reject",
        DECIDE_IN_REVIEW,
        IN_REVIEW,
        body=lambda _: {"reason": "out of scope", "override_reason": "urgent"},
    ),
    # Reports: a program's for its owners and ops (researchers see the call, not the
    # report); a project's for its members, ops and the funders who awarded it.
    Row(
        "GET", "/api/v1/programs/<int:program_id>/report", ADMINISTER_P, {"program_id": "program_p"}
    ),
    Row(
        "GET",
        "/api/v1/projects/<int:project_id>/report",
        only(OPS, RESEARCHER_A, FUNDER_P),
        {"project_id": "project_a"},
    ),
    Row(
        "GET",
        "/api/v1/projects/<int:project_id>/report",
        only(OPS, RESEARCHER_B),
        {"project_id": "project_b"},
    ),
    # Allocations and tranches.
    Row("GET", "/api/v1/allocations", ANY_TOKEN),
    Row(
        "GET",
        "/api/v1/allocations/<int:allocation_id>",
        only(OPS, RESEARCHER_A, FUNDER_P),
        {"allocation_id": "allocation"},
    ),
    Row(
        "POST",
        "/api/v1/tranches/<int:tranche_id>/release",
        only(OPS, FUNDER_P, **{RESEARCHER_A: 403}),
        {"tranche_id": "tranche"},
        body=lambda _: {"progress_report": "Half the runs are done."},
        headers={"Idempotency-Key": "matrix-release"},
    ),
    # The transparency log: public, no token. The world has no checkpoint yet, so the
    # checkpoint and tiles are 404 and the proofs of a tree of size 0 refused.
    Row("GET", "/api/v1/transparency/checkpoint", NOBODY_YET),
    Row("GET", "/api/v1/transparency/key", PUBLIC),
    Row("GET", "/api/v1/transparency/metrics", PUBLIC),
    Row(
        "GET",
        "/api/v1/transparency/tile/<tile:tile_path>",
        NOBODY_YET,
        {"tile_path": Fixed("0/000")},
    ),
    Row("GET", "/api/v1/transparency/entries", PUBLIC),
    Row("GET", "/api/v1/transparency/proof/inclusion", expect(422, anonymous=422)),
    Row("GET", "/api/v1/transparency/proof/consistency", expect(422, anonymous=422)),
    Row("GET", "/api/v1/transparency/balances", PUBLIC),
    Row("GET", "/api/v1/transparency/witnesses", PUBLIC),
    Row(
        "POST",
        "/api/v1/transparency/witnesses/cosign",
        expect(403, anonymous=403),
        body=lambda _: _stranger_cosignature(),
        note="no witness is configured: every key is a stranger's",
    ),
    # Datasets: the public catalogue.
    Row("GET", "/api/v1/datasets", PUBLIC),
    Row("GET", "/api/v1/datasets/<uuid:concept_id>", PUBLIC, {"concept_id": "ds_concept"}),
    Row(
        "GET",
        "/api/v1/datasets/<int:dataset_id>/versions",
        PUBLIC,
        {"dataset_id": "ds_dataset_id"},
    ),
    Row("GET", "/api/v1/datasets/versions/<int:version_id>", PUBLIC, PUBLISHED_DS),
    Row("GET", "/api/v1/datasets/versions/<int:version_id>", DS_DRAFT, DRAFT_DS),
    Row("GET", "/api/v1/datasets/versions/<int:version_id>/croissant.json", PUBLIC, PUBLISHED_DS),
    Row("GET", "/api/v1/datasets/versions/<int:version_id>/croissant.json", DS_DRAFT, DRAFT_DS),
    Row("GET", "/api/v1/datasets/versions/<int:version_id>/datacite.json", PUBLIC, PUBLISHED_DS),
    Row("GET", "/api/v1/datasets/versions/<int:version_id>/datasheet.md", PUBLIC, PUBLISHED_DS),
    Row("GET", "/api/v1/datasets/versions/<int:version_id>/SHA256SUMS", PUBLIC, PUBLISHED_DS),
    Row(
        "GET",
        "/api/v1/datasets/versions/<int:version_id>/files/<path:file_name>",
        PUBLIC,
        PUBLISHED_DS | {"file_name": "ds_file"},
    ),
    Row(
        "GET",
        "/api/v1/datasets/versions/<int:version_id>/files/<path:file_name>",
        DS_DRAFT,
        DRAFT_DS | {"file_name": "ds_file"},
    ),
    # The same files and documents at the public URLs, by the version's UUID.
    *(
        Row("GET", f"/datasets/versions/<uuid:public_id>/{document}", PUBLIC, PUBLIC_DS)
        for document in ("croissant.json", "datacite.json", "datasheet.md", "SHA256SUMS")
    ),
    Row(
        "GET",
        "/datasets/versions/<uuid:public_id>/files/<path:file_name>",
        PUBLIC,
        PUBLIC_DS | {"file_name": "ds_file"},
    ),
    # Datasets: drafts, changed by project A's members and ops.
    Row(
        "POST",
        "/api/v1/projects/<int:project_id>/datasets",
        PROJECT_A,
        {"project_id": "project_a"},
        body=lambda _: {"title": "Firn cores"},
    ),
    Row(
        "POST",
        "/api/v1/datasets/<int:dataset_id>/versions",
        only(OPS, RESEARCHER_A, others=403),
        {"dataset_id": "ds_released_id"},
        note="a dataset whose only version is published: its members start the next",
    ),
    Row(
        "PATCH",
        "/api/v1/datasets/versions/<int:version_id>",
        DS_CHANGE_DRAFT,
        DRAFT_DS,
        body=lambda _: {"title": "Ice cores, revised"},
    ),
    Row(
        "PATCH",
        "/api/v1/datasets/versions/<int:version_id>/datasheet",
        DS_CHANGE_DRAFT,
        DRAFT_DS,
        body=lambda _: {"uses": "Any climate study."},
    ),
    Row(
        "POST",
        "/api/v1/datasets/versions/<int:version_id>/provenance",
        DS_CHANGE_DRAFT,
        DRAFT_DS,
        body=lambda world: {"allocation_ids": [world.allocation]},
    ),
    Row(
        "POST",
        "/api/v1/datasets/versions/<int:version_id>/provenance/remove",
        DS_CHANGE_DRAFT,
        DRAFT_DS,
        body=lambda world: {"allocation_ids": [world.allocation]},
    ),
    Row(
        "PUT",
        "/api/v1/datasets/versions/<int:version_id>/files/<path:file_name>",
        DS_CHANGE_DRAFT,
        DRAFT_DS | {"file_name": Fixed("notes/empty.txt")},
    ),
    Row(
        "DELETE",
        "/api/v1/datasets/versions/<int:version_id>/files/<path:file_name>",
        DS_CHANGE_DRAFT,
        DRAFT_DS | {"file_name": "ds_file"},
    ),
    Row(
        "POST",
        "/api/v1/datasets/versions/<int:version_id>/uploads",
        DS_CHANGE_DRAFT,
        DRAFT_DS,
        body=lambda _: {"name": "big/other.bin", "size": 3},
    ),
    Row(
        "PUT",
        "/api/v1/datasets/versions/<int:version_id>/uploads/<upload_id>/parts/<int:part_number>",
        DS_CHANGE_DRAFT,
        DS_UPLOAD | {"part_number": Fixed("1")},
    ),
    Row(
        "GET",
        "/api/v1/datasets/versions/<int:version_id>/uploads/<upload_id>",
        expect(404, ops=422, researcher_a=422),
        DS_UPLOAD,
        note="past the access check, the parts query is required",
    ),
    Row(
        "POST",
        "/api/v1/datasets/versions/<int:version_id>/uploads/<upload_id>/complete",
        expect(404),
        {"version_id": "ds_draft_id", "upload_id": Fixed("0" * 32)},
        body=lambda _: {"name": UPLOAD_NAME, "parts": 1},
        note="an upload that is not open: 404 to all (completing is in test_api_datasets)",
    ),
    Row(
        "DELETE",
        "/api/v1/datasets/versions/<int:version_id>/uploads/<upload_id>",
        DS_CHANGE_DRAFT,
        DS_UPLOAD,
    ),
    Row("POST", "/api/v1/datasets/versions/<int:version_id>/publish", DS_CHANGE_DRAFT, DRAFT_DS),
    # Datasets: public versions.
    Row(
        "POST",
        "/api/v1/datasets/versions/<int:version_id>/deprecate",
        DS_CHANGE_PUBLISHED,
        PUBLISHED_DS,
        body=lambda _: {"note": "superseded"},
    ),
    Row(
        "POST",
        "/api/v1/datasets/versions/<int:version_id>/takedown",
        DS_OPS,
        PUBLISHED_DS,
        body=lambda _: {"reason": "court order"},
    ),
    Row("POST", "/api/v1/datasets/versions/<int:version_id>/verify", DS_OPS, PUBLISHED_DS),
    # Labelling: vendors and prices.
    Row("GET", f"{LB}/vendors", ANY_TOKEN),
    Row(
        "POST",
        f"{LB}/vendors",
        LB_OPS,
        body=lambda _: {"name": "Acme", "adapter": "inhouse", "task_kinds": ["single_label"]},
    ),
    Row("GET", f"{LB}/vendors/<int:vendor_id>", ANY_TOKEN, VENDOR),
    Row("POST", f"{LB}/vendors/<int:vendor_id>/retire", LB_OPS, VENDOR),
    Row("POST", f"{LB}/vendors/<int:vendor_id>/restore", LB_OPS, VENDOR),
    Row("GET", f"{LB}/vendors/<int:vendor_id>/prices", ANY_TOKEN, VENDOR),
    Row(
        "POST",
        f"{LB}/vendors/<int:vendor_id>/prices",
        LB_OPS,
        VENDOR,
        body=lambda _: {"unit": "label", "micro_credits_per_unit": 20_000},
    ),
    # Labelling: orders.
    Row("GET", f"{LB}/orders", ANY_TOKEN),
    Row(
        "POST",
        f"{LB}/orders",
        PROJECT_A,
        body=order_body,
        headers={"Idempotency-Key": "matrix-order"},
        note="others do not see project A",
    ),
    Row("GET", f"{LB}/orders/<int:order_id>", PROJECT_A, _order("lb_draft")),
    Row("GET", f"{LB}/orders/<int:order_id>/items", PROJECT_A, _order("lb_draft")),
    Row("GET", f"{LB}/orders/<int:order_id>/annotations", PROJECT_A, _order("lb_delivered")),
    Row("POST", f"{LB}/orders/<int:order_id>/quote", PROJECT_A, _order("lb_draft")),
    Row("POST", f"{LB}/orders/<int:order_id>/place", PROJECT_A, _order("lb_quoted")),
    Row("POST", f"{LB}/orders/<int:order_id>/cancel", PROJECT_A, _order("lb_quoted")),
    Row("POST", f"{LB}/orders/<int:order_id>/accept", PROJECT_A, _order("lb_delivered")),
    Row(
        "POST",
        f"{LB}/orders/<int:order_id>/dispute",
        PROJECT_A,
        _order("lb_delivered"),
        body=lambda _: {"reason": "half the labels are wrong"},
    ),
    Row(
        "POST",
        f"{LB}/orders/<int:order_id>/annotators",
        PROJECT_A,
        _order("lb_draft"),
        body=lambda world: {"user_ids": [world.lb_annotator]},
    ),
    Row(
        "POST",
        f"{LB}/orders/<int:order_id>/resolve",
        LB_OPS,
        _order("lb_disputed"),
        body=lambda _: {"resolution": "accepted", "note": "the labels hold up"},
    ),
    Row("POST", f"{LB}/orders/<int:order_id>/delivered", LB_OPS, _order("lb_invoice")),
    # Label Studio's webhook carries a shared secret, not a token: without it, 401 to all.
    Row(
        "POST",
        f"{LB}/webhooks/label-studio",
        expect(401),
        body=lambda _: {"action": "PROJECT_UPDATED"},
        note="no webhook secret sent (tests/labelling/test_labelling_api.py sends one)",
    ),
    # An item's image opens with the signed link Label Studio was given, whoever asks;
    # without one, no token helps (tests/labelling/test_label_studio_loop.py signs some).
    Row(
        "GET",
        f"{LB}/items/<int:item_id>/image",
        expect(422, anonymous=422),
        {"item_id": Fixed("1")},
        note="no signed query: refused before any lookup",
    ),
)


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    app = create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )
    app.extensions[STORE_KEY] = blob_store_for_url(f"memory://matrix-{uuid.uuid4().hex}")
    return app


@dataclass(frozen=True)
class Matrix:
    app: Flask
    session: Session
    world: World


@pytest.fixture(scope="module")
def matrix(sqlite_engine: Engine) -> Iterator[Matrix]:
    """One app and one world for every row, built once per worker: each request runs
    in a SAVEPOINT that is rolled back (``_status``), so no row sees another's writes.
    Everything is rolled back after the module."""
    with rolled_back_session(sqlite_engine) as session:
        factory = joined_factory(session)
        app = create_app(load_settings(), session_factory=factory, executor=world_executor())
        store = blob_store_for_url(f"memory://matrix-{uuid.uuid4().hex}")
        app.extensions[STORE_KEY] = store
        world = with_labelling(session, with_datasets(session, build_world(session), store))
        yield Matrix(app, session, world)


def _url(row: Row, world: World) -> str:
    def value(match: re.Match[str]) -> str:
        name = match["name"]
        assert name in row.path, f"{row.id}: the row names no target for <{name}>"
        target = row.path[name]
        return target if isinstance(target, Fixed) else str(getattr(world, target))

    return _ARGUMENT.sub(value, row.rule)


def _status(client: FlaskClient, session: Session, row: Row, world: World, persona: str) -> int:
    """The status ``persona`` gets, inside a SAVEPOINT that is rolled back afterwards."""
    body = row.body(world) if row.body is not None else None
    # On the connection, not the Session: Session.begin_nested() emits its SAVEPOINT
    # lazily, only once the test session itself next touches the database.
    savepoint = session.connection().begin_nested()
    try:
        response = client.open(
            _url(row, world),
            method=row.method,
            json=body,
            headers=world.headers[persona] | row.headers,
        )
    finally:
        savepoint.rollback()
    return response.status_code


def _matches(expected: Expect, status: int) -> bool:
    if expected == OK:
        return 200 <= status < 300
    return status == expected


def _routes(app: Flask) -> set[tuple[str, str]]:
    """The API's routes; the browser UI's (endpoints ``ui_*``) have their own matrix,
    tests/ui/test_ui_access.py, as they answer a session cookie, not a token."""
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if not rule.endpoint.startswith("ui_")
        for method in (rule.methods or set()) - IMPLICIT_METHODS
    }


def test_every_route_has_a_row(app: Flask) -> None:
    covered = {(row.method, row.rule) for row in MATRIX}
    routes = _routes(app)

    missing = sorted(routes - covered)
    stale = sorted(covered - routes)
    assert not missing, f"routes with no row in the access matrix: {missing}"
    assert not stale, f"matrix rows for routes that do not exist: {stale}"


def test_every_row_names_every_persona() -> None:
    for row in MATRIX:
        assert set(row.answers) == set(PERSONAS), row.id


@pytest.mark.parametrize("row", MATRIX, ids=[row.id for row in MATRIX])
def test_access(matrix: Matrix, row: Row) -> None:
    client = matrix.app.test_client()
    got = {
        persona: _status(client, matrix.session, row, matrix.world, persona) for persona in PERSONAS
    }

    wrong = {
        persona: f"expected {row.answers[persona]}, got {status}"
        for persona, status in got.items()
        if not _matches(row.answers[persona], status)
    }
    assert not wrong, f"{row.id}: {wrong}" + (f" ({row.note})" if row.note else "")
