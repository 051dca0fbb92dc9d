"""Datasets API, the writing side: creating datasets and versions, describing a draft,
recording its provenance, and the lifecycle (publish, deprecate, take down, verify).
Registers on the datasets blueprint of :mod:`credits.api.datasets`.

With DOIs configured, these routes tell DataCite as the CLI does: each passes the
app's registrar to the service as ``dois`` (publishing waits for DataCite and fails
with its refusal), and after the commit of a first save, a deprecation or a take-down
:func:`credits.datasets.doi.finish_after_commit` tells DataCite, leaving what fails
to the sweep.
"""

from __future__ import annotations

from collections.abc import Callable

from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from credits.api.auth import session_factory
from credits.api.datasets import (
    Id,
    blob_store,
    blueprint,
    caller,
    doi_registrar,
    energy_policy,
    version_answer,
)
from credits.api.openapi import operation
from credits.api.parsing import NoInput, json_body, optional_json_body
from credits.datasets import provenance, publishing, queries, service
from credits.datasets.doi import DoiRegistrar, finish_after_commit
from credits.datasets.models import TITLE_MAX_LENGTH
from credits.datasets.schemas import (
    DatasheetPatch,
    MetadataPatch,
    ProvenanceOut,
    TakedownOut,
    VerifyReport,
    VersionOut,
)
from credits.datasets.verify import verify_files
from credits.db import session_scope
from credits.identity.access import require_any_role
from credits.identity.models import Role, Scope


class CreateDatasetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=TITLE_MAX_LENGTH)


class ProvenanceIn(BaseModel):
    """Finished GPU jobs and allocations of the dataset's project."""

    model_config = ConfigDict(extra="forbid")

    job_ids: list[Id] = Field(default_factory=list, max_length=1000)
    allocation_ids: list[Id] = Field(default_factory=list, max_length=1000)


class DeprecateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    successor_version_id: Id | None = Field(
        default=None, description="a later published version of the same dataset"
    )
    note: str | None = Field(default=None, max_length=2000)


class TakedownIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="shown on the tombstone")


def _tell_datacite(registrar: DoiRegistrar | None, version_id: int) -> None:
    """After the commit: DataCite hears of the change now; what fails stays pending
    for the sweep (finish_after_commit never raises for DataCite's sake)."""
    finish_after_commit(session_factory(), registrar, version_id)


# Drafts: create, describe, record provenance.


@blueprint.post("/projects/<int:project_id>/datasets")
@operation(
    "Create a dataset",
    body=CreateDatasetIn,
    response=VersionOut,
    status=201,
    problems=(403, 404, 422),
)
def create_dataset(project_id: int) -> ResponseReturnValue:
    """A new dataset of the project with its first version, a draft."""
    actor = caller(Scope.WRITE)
    body = json_body(CreateDatasetIn)
    dois = doi_registrar()
    with session_scope(session_factory()) as session:
        version = service.create_dataset(
            session, project_id=project_id, title=body.title, actor=actor, dois=dois
        )
    _tell_datacite(dois, version.id)
    return version_answer(version, 201)


@blueprint.post("/datasets/<int:dataset_id>/versions")
@operation(
    "Start a new version",
    body=NoInput,
    body_required=False,
    response=VersionOut,
    status=201,
    problems=(403, 404, 409),
)
def new_version(dataset_id: int) -> ResponseReturnValue:
    """A draft copying the newest published version's metadata, datasheet, provenance and
    file list (the files themselves are not copied). 409 when a draft exists."""
    actor = caller(Scope.WRITE)
    optional_json_body(NoInput)
    dois = doi_registrar()
    with session_scope(session_factory()) as session:
        version = service.new_version(session, dataset_id=dataset_id, actor=actor, dois=dois)
    _tell_datacite(dois, version.id)
    return version_answer(version, 201)


@blueprint.patch("/datasets/versions/<int:version_id>")
@operation(
    "Edit a draft's metadata",
    body=MetadataPatch,
    response=VersionOut,
    problems=(403, 404, 409, 422),
)
def update_metadata(version_id: int) -> ResponseReturnValue:
    """Sets the fields given; the others stay. 409 for a version that is not a draft."""
    actor = caller(Scope.WRITE)
    patch = json_body(MetadataPatch)
    with session_scope(session_factory()) as session:
        version = service.update_metadata(
            session, version_id=version_id, changes=patch, actor=actor
        )
    return version.model_dump(mode="json")


@blueprint.patch("/datasets/versions/<int:version_id>/datasheet")
@operation(
    "Edit a draft's datasheet",
    body=DatasheetPatch,
    response=VersionOut,
    problems=(403, 404, 409, 422),
)
def update_datasheet(version_id: int) -> ResponseReturnValue:
    """Sets the sections given; the others stay. 409 for a version that is not a draft."""
    actor = caller(Scope.WRITE)
    patch = json_body(DatasheetPatch)
    with session_scope(session_factory()) as session:
        version = service.update_datasheet(
            session, version_id=version_id, changes=patch, actor=actor
        )
    return version.model_dump(mode="json")


@blueprint.post("/datasets/versions/<int:version_id>/provenance")
@operation(
    "Record what produced a draft",
    body=ProvenanceIn,
    response=ProvenanceOut,
    problems=(403, 404, 409, 422),
)
def record_provenance(version_id: int) -> ResponseReturnValue:
    """Adds finished GPU jobs and allocations of the dataset's project, with the credits,
    GPU-hours and energy they account for."""
    return _change_provenance(version_id, provenance.record_provenance)


@blueprint.post("/datasets/versions/<int:version_id>/provenance/remove")
@operation(
    "Remove jobs and allocations from a draft's provenance",
    body=ProvenanceIn,
    response=ProvenanceOut,
    problems=(403, 404, 409),
)
def remove_provenance(version_id: int) -> ResponseReturnValue:
    """Takes the jobs out; an allocation a remaining job was charged to stays."""
    return _change_provenance(version_id, provenance.remove_provenance)


def _change_provenance(
    version_id: int, change: Callable[..., ProvenanceOut]
) -> ResponseReturnValue:
    """Records or removes the jobs and allocations a ProvenanceIn body names."""
    actor = caller(Scope.WRITE)
    body = json_body(ProvenanceIn)
    with session_scope(session_factory()) as session:
        summary = change(
            session,
            version_id=version_id,
            actor=actor,
            energy=energy_policy(),
            job_ids=body.job_ids,
            allocation_ids=body.allocation_ids,
        )
    return summary.model_dump(mode="json")


# The lifecycle.


@blueprint.post("/datasets/versions/<int:version_id>/publish")
@operation(
    "Publish a draft",
    body=NoInput,
    body_required=False,
    response=VersionOut,
    problems=(403, 404, 409, 422),
)
def publish(version_id: int) -> ResponseReturnValue:
    """Freezes the draft and pins its manifest hash. 422 with ``missing``, the list of
    every field, section or part it still needs; 409 when it is already published. With
    DOIs on, the DOI is made findable first: DataCite's refusal (422, 502) or outage
    (503) leaves the version a draft."""
    actor = caller(Scope.WRITE)
    optional_json_body(NoInput)
    with session_scope(session_factory()) as session:
        version = publishing.publish_version(
            session,
            version_id=version_id,
            actor=actor,
            energy=energy_policy(),
            dois=doi_registrar(),
        )
    return version.model_dump(mode="json")


@blueprint.post("/datasets/versions/<int:version_id>/deprecate")
@operation(
    "Deprecate a published version",
    body=DeprecateIn,
    body_required=False,
    response=VersionOut,
    problems=(403, 404, 409, 422),
)
def deprecate(version_id: int) -> ResponseReturnValue:
    """The version stays readable and downloadable, marked deprecated, pointing at its
    successor (a later published version of the dataset)."""
    actor = caller(Scope.WRITE)
    body = optional_json_body(DeprecateIn)
    dois = doi_registrar()
    with session_scope(session_factory()) as session:
        version = publishing.deprecate_version(
            session,
            version_id=version_id,
            actor=actor,
            successor_version_id=body.successor_version_id,
            note=body.note,
            dois=dois,
        )
    _tell_datacite(dois, version.id)
    return version.model_dump(mode="json")


@blueprint.post("/datasets/versions/<int:version_id>/takedown")
@operation(
    "Take a version down (ops)",
    body=TakedownIn,
    response=TakedownOut,
    problems=(403, 404, 409, 422),
)
def takedown(version_id: int) -> ResponseReturnValue:
    """Ops only, with a reason (audited): the files answer 410 from now on; the version
    stays as a tombstone with its citation and the reason."""
    actor = caller(Scope.WRITE)
    body = json_body(TakedownIn)
    dois = doi_registrar()
    with session_scope(session_factory()) as session:
        version = publishing.take_down_version(
            session, version_id=version_id, actor=actor, reason=body.reason, dois=dois
        )
    _tell_datacite(dois, version.id)
    return version.model_dump(mode="json")


@blueprint.post("/datasets/versions/<int:version_id>/verify")
@operation(
    "Re-hash a version's stored files (ops)",
    body=NoInput,
    body_required=False,
    response=VerifyReport,
    problems=(403, 404),
)
def verify(version_id: int) -> ResponseReturnValue:
    """Reads every stored file of the version again and names each missing or corrupt one."""
    actor = caller(Scope.READ)
    require_any_role(actor, Role.OPS)
    optional_json_body(NoInput)
    with session_scope(session_factory()) as session:
        queries.get_version(session, actor, version_id)
        report = verify_files(session, store=blob_store(), version_id=version_id)
    return report.model_dump(mode="json")
