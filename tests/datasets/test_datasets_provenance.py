"""Provenance: the jobs and allocations behind a version, with the figures the reports give."""

from __future__ import annotations

from decimal import Decimal

import jsonschema
import mlcroissant as mlc
import pytest
from datasets_world import CSV, DATASHEET, METADATA, datacite_schema
from reports_world import ReportsWorld, add_telemetry, build_reports_world
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.datasets import exports, provenance, publishing, queries, service
from credits.datasets.errors import InvalidProvenance
from credits.jobs.models import Job
from credits.reports.energy import EnergyPolicy
from credits.reports.service import project_report
from credits.storage import blob_store_for_url

ENERGY = EnergyPolicy.from_values(pue=1.5, grid_g_per_kwh=400.0)
KWH_MJ = 3_600_000_000


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> ReportsWorld:
    world = build_reports_world(joined_session_factory)
    world.a.submit(gpus=2, duration=600)
    world.a.submit(gpus=1, duration=1200, labels={"credits.dev/simulated-exit-code": "1"})
    world.b.submit(gpus=4, duration=300)
    world.run_until_done()
    return world


def _jobs(session: Session, project_id: int) -> list[int]:
    return list(
        session.scalars(select(Job.id).where(Job.project_id == project_id).order_by(Job.id))
    )


def test_recorded_jobs_carry_the_figures_of_the_project_report(
    session: Session, world: ReportsWorld
) -> None:
    first, second = _jobs(session, world.a.project_id)
    at = world.clock()
    add_telemetry(session, first, samples=10, util=80.0, energy_mj=KWH_MJ, at=at)
    add_telemetry(session, second, samples=10, util=20.0, energy_mj=2 * KWH_MJ, at=at)
    draft = service.create_dataset(
        session, project_id=world.a.project_id, title="Runs", actor=world.a.researcher
    )

    summary = provenance.record_provenance(
        session,
        version_id=draft.id,
        actor=world.a.researcher,
        energy=ENERGY,
        job_ids=[first, second],
    )

    report = project_report(session, world.a.project_id, at, energy=ENERGY)
    lines = {line.job_id: line for line in summary.lines if line.kind == "job"}
    for job in report.jobs:
        line = lines[job.job_id]
        assert line.charged_micro == job.charged
        assert line.gpu_seconds_micro / 1e6 == pytest.approx(job.gpu_seconds, abs=1e-3)
        assert line.kwh_micro / 1e6 == pytest.approx(job.footprint.kwh)
        assert line.kg_co2e_micro / 1e6 == pytest.approx(job.footprint.kg_co2e)
    assert summary.charged_micro == sum(job.charged for job in report.jobs) > 0
    assert summary.gpu_hours == pytest.approx(report.efficiency.gpu_seconds / 3600, abs=1e-6)
    # 3 kWh of GPU energy x PUE 1.5 x 400 g/kWh = 1.8 kg.
    assert (summary.kwh, summary.kg_co2e) == (pytest.approx(3.0), pytest.approx(1.8))
    (allocation,) = [line for line in summary.lines if line.kind == "allocation"]
    assert allocation.allocation_id == world.allocation_a
    assert allocation.program_id == world.program_id
    assert not allocation.explicit
    assert allocation.charged_micro == summary.charged_micro
    assert [p.name for p in summary.programs] == ["Compute"]
    assert summary.sentence().endswith("3.0 kWh, 1.8 kg CO2e) from program Compute")
    assert f"{Decimal(summary.charged_micro) / 1_000_000:,.2f}".rstrip("0").rstrip(".") in (
        summary.sentence()
    )


def test_jobs_and_allocations_of_other_projects_are_refused_by_id(
    session: Session, world: ReportsWorld
) -> None:
    (theirs,) = _jobs(session, world.b.project_id)
    draft = service.create_dataset(
        session, project_id=world.a.project_id, title="Runs", actor=world.a.researcher
    )

    with pytest.raises(InvalidProvenance) as raised:
        provenance.record_provenance(
            session,
            version_id=draft.id,
            actor=world.a.researcher,
            energy=ENERGY,
            job_ids=[theirs, 999_999],
            allocation_ids=[world.allocation_b],
        )

    assert raised.value.extra["job_ids"] == sorted([theirs, 999_999])
    assert queries.get_version(session, world.a.researcher, draft.id).provenance.lines == []
    with pytest.raises(InvalidProvenance) as raised:
        provenance.record_provenance(
            session,
            version_id=draft.id,
            actor=world.a.researcher,
            energy=ENERGY,
            allocation_ids=[world.allocation_b],
        )
    assert raised.value.extra["allocation_ids"] == [world.allocation_b]


def test_an_allocation_recorded_on_its_own_stays_when_its_jobs_go(
    session: Session, world: ReportsWorld
) -> None:
    first, _ = _jobs(session, world.a.project_id)
    draft = service.create_dataset(
        session, project_id=world.a.project_id, title="Runs", actor=world.a.researcher
    )
    provenance.record_provenance(
        session,
        version_id=draft.id,
        actor=world.a.researcher,
        energy=ENERGY,
        job_ids=[first],
        allocation_ids=[world.allocation_a],
    )

    summary = provenance.remove_provenance(
        session, version_id=draft.id, actor=world.a.researcher, energy=ENERGY, job_ids=[first]
    )

    (line,) = summary.lines
    assert (line.kind, line.explicit, line.charged_micro) == ("allocation", True, 0)
    summary = provenance.remove_provenance(
        session,
        version_id=draft.id,
        actor=world.a.researcher,
        energy=ENERGY,
        allocation_ids=[world.allocation_a],
    )
    assert summary.lines == []


def test_both_exports_show_the_provenance_and_datacite_funds_per_program(
    session: Session, world: ReportsWorld
) -> None:
    first, second = _jobs(session, world.a.project_id)
    store = blob_store_for_url(f"memory://provenance-{id(session)}")
    researcher = world.a.researcher
    draft = service.create_dataset(
        session, project_id=world.a.project_id, title="Runs", actor=researcher
    )
    service.update_metadata(session, version_id=draft.id, changes=METADATA, actor=researcher)
    service.update_datasheet(session, version_id=draft.id, changes=DATASHEET, actor=researcher)
    blob = store.put_stream([CSV], max_bytes=1024)
    service.add_file(session, version_id=draft.id, name="events.csv", blob=blob, actor=researcher)
    provenance.record_provenance(
        session, version_id=draft.id, actor=researcher, energy=ENERGY, job_ids=[first, second]
    )
    publishing.publish_version(session, version_id=draft.id, actor=researcher, energy=ENERGY)
    version = queries.get_version(session, None, draft.id)

    datacite = exports.datacite(
        version, base_url="https://x.example", publisher="P", funder_name="Research Council"
    )
    croissant = exports.croissant(
        version,
        base_url="https://x.example",
        publisher="P",
        heads=exports.tabular_heads(version, store),
    )

    jsonschema.Draft201909Validator(datacite_schema()).validate(datacite)
    assert datacite["fundingReferences"] == [
        {
            "funderName": "Research Council",
            "awardNumber": f"program-{world.program_id}",
            "awardTitle": "Compute",
        }
    ]
    methods = [d for d in datacite["descriptions"] if d["descriptionType"] == "Methods"]
    assert methods[0]["description"] == f"This version was {version.provenance.sentence()}."
    activities = croissant["prov:wasGeneratedBy"]
    assert [a["name"] for a in activities] == [f"GPU job {first}", f"GPU job {second}"]
    assert croissant["funding"][0]["name"] == "Compute"
    assert version.provenance.sentence() in croissant["rai:dataCollection"]
    metadata = mlc.Dataset(jsonld=croissant).metadata
    assert not metadata.ctx.issues.errors
    assert not metadata.ctx.issues.warnings
