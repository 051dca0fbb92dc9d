"""Provenance: the GPU jobs, allocations and labelling orders that produced a version,
and what they cost.

A draft records jobs (finished ones, of the dataset's project) and
allocations (of that project). The figures come from the same code as the
funder reports (:mod:`credits.reports.activity`): a job's charged
micro-credits, its GPU-seconds from its usage records, its energy from GPU
telemetry with the pool's PUE and grid intensity. Every allocation a
recorded job was charged to joins the provenance on its own (``explicit`` is
False), carrying what those jobs took from it and its program, which the
DataCite export names as a funder. Figures are refreshed on each change and
once more at publication; after that they are frozen with the version.

An accepted labelling order records itself (:func:`record_labelling_order`)
with the labelling credits it charged and the program of the allocation its
hold drew from; settled orders never change, so publication keeps its figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.datasets.drafts import editable_draft
from credits.datasets.errors import InvalidProvenance
from credits.datasets.models import DatasetProvenance, DatasetVersion, ProvenanceKind
from credits.datasets.queries import render_provenance
from credits.datasets.schemas import ProvenanceOut
from credits.grants.models import Allocation
from credits.identity.actor import Actor
from credits.jobs.models import FINAL_STATES, Job
from credits.reports.activity import Activity, load_activity
from credits.reports.energy import EnergyPolicy

MICRO = Decimal(1_000_000)


def _micro(value: Decimal) -> int:
    return int((value * MICRO).to_integral_value())


def record_provenance(
    session: Session,
    *,
    version_id: int,
    actor: Actor,
    energy: EnergyPolicy,
    job_ids: Collection[int] = (),
    allocation_ids: Collection[int] = (),
) -> ProvenanceOut:
    """Adds jobs and allocations to a draft's provenance; ones already there stay once.

    Raises InvalidProvenance naming every job that is not a finished job of
    the dataset's project and every allocation not of that project, and
    VersionImmutable for a version that is not a draft.
    """
    version = editable_draft(session, actor, version_id)
    project_id = version.dataset.project_id
    _check_jobs(session, project_id, job_ids)
    programs = _check_allocations(session, project_id, allocation_ids)
    have_jobs = {row.job_id for row in version.provenance if row.job_id is not None}
    by_allocation = {r.allocation_id: r for r in version.provenance if r.allocation_id is not None}
    for job_id in sorted(set(job_ids) - have_jobs):
        version.provenance.append(
            DatasetProvenance(kind=ProvenanceKind.JOB.value, job_id=job_id, recorded_by=actor.label)
        )
    for allocation_id in sorted(set(allocation_ids)):
        row = by_allocation.get(allocation_id)
        if row is not None:
            row.explicit = True
            continue
        version.provenance.append(
            DatasetProvenance(
                kind=ProvenanceKind.ALLOCATION.value,
                allocation_id=allocation_id,
                program_id=programs[allocation_id],
                recorded_by=actor.label,
            )
        )
    refresh(session, version, energy)
    return render_provenance(session, version.provenance)


def remove_provenance(
    session: Session,
    *,
    version_id: int,
    actor: Actor,
    energy: EnergyPolicy,
    job_ids: Collection[int] = (),
    allocation_ids: Collection[int] = (),
) -> ProvenanceOut:
    """Takes jobs and allocations out of a draft's provenance (an allocation that a
    remaining job was charged to stays, no longer explicit)."""
    version = editable_draft(session, actor, version_id)
    jobs, allocations = set(job_ids), set(allocation_ids)
    for row in list(version.provenance):
        if row.job_id in jobs:
            version.provenance.remove(row)
        elif row.allocation_id in allocations:
            row.explicit = False
    refresh(session, version, energy)
    return render_provenance(session, version.provenance)


def record_labelling_order(
    session: Session,
    *,
    version_id: int,
    actor: Actor,
    order_id: int,
    charged_micro: int,
    program_id: int | None,
) -> ProvenanceOut:
    """Names a labelling order among a draft's provenance, with the labelling credits it
    charged and the program whose allocation paid (DataCite's funding reference).

    Recording the same order again updates its figures. The labelling domain calls
    this when it delivers an accepted order; raises VersionImmutable for a version
    that is not a draft.
    """
    if charged_micro < 0:
        raise InvalidProvenance("a labelling order charges zero credits or more")
    version = editable_draft(session, actor, version_id)
    row = next((r for r in version.provenance if r.labelling_order_id == order_id), None)
    if row is None:
        row = DatasetProvenance(
            kind=ProvenanceKind.LABELLING_ORDER.value,
            labelling_order_id=order_id,
            recorded_by=actor.label,
        )
        version.provenance.append(row)
    row.charged_micro = charged_micro
    row.program_id = program_id
    session.flush()
    return render_provenance(session, version.provenance)


def _check_jobs(session: Session, project_id: int, job_ids: Collection[int]) -> None:
    if not job_ids:
        return
    found = dict(
        session.execute(
            select(Job.id, Job.state).where(Job.id.in_(list(job_ids)), Job.project_id == project_id)
        ).all()
    )
    final = {state.value for state in FINAL_STATES}
    wrong = sorted(job_id for job_id in set(job_ids) if found.get(job_id) not in final)
    if wrong:
        raise InvalidProvenance(
            "jobs "
            + ", ".join(map(str, wrong))
            + " are not finished jobs of this dataset's project",
            job_ids=wrong,
        )


def _check_allocations(
    session: Session, project_id: int, allocation_ids: Collection[int]
) -> dict[int, int]:
    """Each allocation's program; raises InvalidProvenance for any not of the project."""
    if not allocation_ids:
        return {}
    found = dict(
        session.execute(
            select(Allocation.id, Allocation.program_id).where(
                Allocation.id.in_(list(allocation_ids)), Allocation.project_id == project_id
            )
        ).all()
    )
    wrong = sorted(set(allocation_ids) - set(found))
    if wrong:
        raise InvalidProvenance(
            "allocations " + ", ".join(map(str, wrong)) + " are not of this dataset's project",
            allocation_ids=wrong,
        )
    return found


def refresh(session: Session, version: DatasetVersion, energy: EnergyPolicy) -> None:
    """Recomputes every figure of a draft's provenance from the jobs' current records."""
    job_rows = [row for row in version.provenance if row.job_id is not None]
    activity = load_activity(
        session,
        jobs=Job.id.in_([row.job_id for row in job_rows]),
        records=None,
        policy=energy,
    )
    for row in job_rows:
        facts = activity.jobs[row.job_id]  # type: ignore[index]  # job rows have a job id
        row.charged_micro = facts.charged
        row.gpu_seconds_micro = _micro(facts.gpu_seconds)
        row.kwh_micro = _micro(facts.footprint.kwh)
        row.kg_co2e_micro = _micro(facts.footprint.kg_co2e)
    _refresh_allocations(session, version, activity)
    session.flush()


def _refresh_allocations(session: Session, version: DatasetVersion, activity: Activity) -> None:
    """Allocation rows carry what the recorded jobs captured from their accounts."""
    captured: dict[int, int] = defaultdict(int)
    for by_account in activity.shares.values():
        for account_id, amount in by_account.items():
            captured[account_id] += amount
    rows = {r.allocation_id: r for r in version.provenance if r.allocation_id is not None}
    allocations = session.execute(
        select(Allocation.id, Allocation.account_id, Allocation.program_id).where(
            (Allocation.account_id.in_(list(captured))) | (Allocation.id.in_(list(rows)))
        )
    ).all()
    for allocation_id, account_id, program_id in allocations:
        charged = captured.get(account_id, 0)
        row = rows.get(allocation_id)
        if row is None and charged > 0:
            version.provenance.append(
                DatasetProvenance(
                    kind=ProvenanceKind.ALLOCATION.value,
                    allocation_id=allocation_id,
                    program_id=program_id,
                    explicit=False,
                    charged_micro=charged,
                    recorded_by="system:datasets",
                )
            )
        elif row is not None and not row.explicit and charged == 0:
            version.provenance.remove(row)
        elif row is not None:
            row.charged_micro = charged
