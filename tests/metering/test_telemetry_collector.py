"""Telemetry collected into job rows: differences added, never a scrape counted twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jobs_world import START, JobsWorld, build_jobs_world
from sqlalchemy.orm import Session, sessionmaker

from credits.metering.collector import TelemetryCollector, pod_job_id
from credits.metering.models import JobTelemetryRow
from credits.metering.telemetry import GpuSample, TelemetryError

NAMESPACE = "credits-jobs"


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def _sample(pod: str | None, util: float, energy: int, gpu: int = 0) -> GpuSample:
    return GpuSample(
        gpu=gpu,
        uuid=f"GPU-{gpu}",
        hostname="node-1",
        namespace=NAMESPACE if pod else None,
        pod=pod,
        gpu_util_percent=util,
        fb_used_mib=1000.0 + util,
        energy_mj=energy,
    )


def _row(world: JobsWorld, job_id: int) -> JobTelemetryRow:
    with world.session() as session:
        row = session.get(JobTelemetryRow, job_id)
        assert row is not None
        session.expunge(row)
        return row


def test_pods_of_this_instance_map_to_their_job() -> None:
    assert (
        pod_job_id(NAMESPACE, "credits-42-2-0-x7k2p", job_namespace=NAMESPACE, instance="credits")
        == 42
    )
    assert (
        pod_job_id("other", "credits-42-2-x", job_namespace=NAMESPACE, instance="credits") is None
    )
    assert (
        pod_job_id(NAMESPACE, "credits-other-1-x", job_namespace=NAMESPACE, instance="credits")
        is None
    )
    assert (
        pod_job_id(NAMESPACE, "staging-42-2-x", job_namespace=NAMESPACE, instance="credits") is None
    )


def test_pods_are_matched_by_the_instance_names_slug_as_their_jobs_are_named() -> None:
    def job_of(pod: str, instance: str) -> int | None:
        return pod_job_id(NAMESPACE, pod, job_namespace=NAMESPACE, instance=instance)

    assert job_of("lab-a-prod-42-2-0-x7k2p", "Lab_A prod") == 42
    assert job_of("credits-2025-lab-7-1-0-x", "2025-lab") == 7
    assert job_of("Lab_A prod-42-2-0-x7k2p", "Lab_A prod") is None


def test_two_scrapes_give_mean_utilisation_peak_memory_and_energy(world: JobsWorld) -> None:
    job = world.submit()
    pod = f"credits-{job.id}-1-abcde"
    scrapes = [[_sample(pod, 20, 5_000), _sample(None, 0, 9)], [_sample(pod, 60, 8_000)]]
    collector = TelemetryCollector()
    for index, samples in enumerate(scrapes):
        with world.session() as session:
            collector.collect_dcgm(
                session,
                ["http://exporter:9400/metrics"],
                at=START + timedelta(seconds=30 * index),
                job_namespace=NAMESPACE,
                instance="credits",
                fetch=lambda _url, s=samples: s,
            )
    row = _row(world, job.id)
    assert row.samples == 2
    assert row.gpu_util_sum / row.samples == pytest.approx(40.0)
    assert row.peak_fb_used_mib == pytest.approx(1060.0)
    assert row.energy_mj == 3_000
    assert row.last_at - row.first_at == timedelta(seconds=30)


def test_storing_again_without_a_scrape_changes_nothing(world: JobsWorld) -> None:
    job = world.submit()
    collector = TelemetryCollector()
    with world.session() as session:
        collector.collect_slots(session, [_sample(None, 50, 100)], {"0": job.id}, at=START)
    with world.session() as session:
        assert collector.store(session) == 0
    assert _row(world, job.id).samples == 1


def test_a_restarted_collector_adds_only_what_it_saw(world: JobsWorld) -> None:
    job = world.submit()
    first = TelemetryCollector()
    with world.session() as session:
        first.collect_slots(session, [_sample(None, 50, 100)], {"0": job.id}, at=START)
        first.collect_slots(
            session, [_sample(None, 50, 400)], {"0": job.id}, at=START + timedelta(seconds=30)
        )
    restarted = TelemetryCollector()
    with world.session() as session:
        later = START + timedelta(seconds=60)
        restarted.collect_slots(session, [_sample(None, 80, 900)], {"0": job.id}, at=later)
    row = _row(world, job.id)
    assert row.samples == 3
    # The restarted collector has no earlier counter: its first reading adds no energy.
    assert row.energy_mj == 300
    assert row.gpu_util_sum == pytest.approx(180.0)


def test_an_unreachable_exporter_is_reported_and_the_others_still_count(
    world: JobsWorld,
) -> None:
    job = world.submit()
    pod = f"credits-{job.id}-1-abcde"

    def fetch(url: str) -> list[GpuSample]:
        if "down" in url:
            raise TelemetryError("connection refused")
        return [_sample(pod, 10, 1)]

    collector = TelemetryCollector()
    with world.session() as session:
        changed = collector.collect_dcgm(
            session,
            ["http://down:9400/metrics", "http://up:9400/metrics"],
            at=START,
            job_namespace=NAMESPACE,
            instance="credits",
            fetch=fetch,
        )
    assert changed == 1
    assert collector.errors == ["http://down:9400/metrics: connection refused"]
