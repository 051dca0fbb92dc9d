"""Scale check of the Kubernetes executor: one observe sweep over 10,000 running jobs,
and one whole reconcile sweep with those jobs in the database.

The emulator (tests/k8s) holds N running Jobs with one Running pod each, written
straight into its store; a fresh executor lists them (its start-up), then one
observe of every job id is timed, as the reconciler's observe step makes it.
Then N running jobs are written to a migrated SQLite database and one full
``reconcile`` (launch, stop, observe, meter, settle, release) is timed against
the same executor. Prints ``jobs=N list_s=… sweep_s=… reconcile_s=… peak_mib=…``
(sweep_s: the executor's observe alone; reconcile_s: the whole reconcile, timed
without tracemalloc; peak: tracemalloc up to the observe, this process, the
emulator's own store included).

    .venv/bin/python scripts/bench/k8s_reconcile.py --jobs 10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "k8s"))

from k8s_emulator import K8sEmulator
from k8s_kube import A100, FLAVOUR, NAMESPACE, make_executor, request
from k8s_pods import pod_from_template, running_status

from credits import migrate
from credits.db import make_engine, make_session_factory, session_scope, utcnow
from credits.grants import projects
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.jobs.executors.base import Phase
from credits.jobs.manifests import ManifestOptions, job_manifest
from credits.jobs.models import Job, JobRun, JobState
from credits.jobs.reconciler import reconcile
from credits.jobs.spec import JobSpec
from credits.pool import service as pool

SYSTEM = Actor.system("bench")
SPEC = JobSpec(
    name="train",
    image="python:3.12",
    command=["python", "-c", "print('hi')"],
    flavour="a100-80gb",
    gpus=2,
    max_runtime_seconds=3600,
).model_dump_json()


def fill(emu: K8sEmulator, jobs: int) -> None:
    options = ManifestOptions(namespace=NAMESPACE, instance="credits")
    started = emu.clock.iso()
    with emu.store.lock:
        for job_id in range(1, jobs + 1):
            job = emu.store.create(
                "jobs", job_manifest(request(job_id), options, uid=f"bench{job_id}")
            )
            pod = pod_from_template(job, None)
            pod["metadata"]["name"] = f"{job['metadata']['name']}-x"
            pod["spec"]["nodeName"] = f"gpu-{job_id // 4}"
            pod["status"] = running_status(pod, started, "10.0.0.1")
            emu.store.create("pods", pod)


def running_jobs_in_database(jobs: int, directory: str) -> sessionmaker[Session]:
    """A migrated SQLite database whose jobs 1..N run attempt 1 on the emulator's pool."""
    url = f"sqlite:///{directory}/bench.db"
    migrate.upgrade(url)
    factory = make_session_factory(make_engine(url))
    now = utcnow()
    with session_scope(factory) as session:
        create_user(
            session,
            email="pi@bench.org",
            name="PI",
            roles=(Role.RESEARCHER,),
            institution="Bench",
            actor=SYSTEM,
        )
        researcher = actor_for_email(session, "pi@bench.org")
        project = projects.create_project(
            session, title="Bench", field_of_science="Benchmarks", actor=researcher
        )
        flavour = pool.add_flavour(
            session,
            name=FLAVOUR,
            node_label_value=A100,
            gpu_memory_gb=80,
            gpus_per_node=8,
            actor=SYSTEM,
        )
        rate = pool.set_rate(
            session,
            flavour=FLAVOUR,
            credits_per_gpu_hour_micro=2_000_000,
            effective_from=now,
            actor=SYSTEM,
            now=now,
        )
        session.execute(
            insert(Job),
            [
                {
                    "id": job_id,
                    "project_id": project.id,
                    "name": "train",
                    "spec_json": SPEC,
                    "flavour_id": flavour.id,
                    "gpus": 2,
                    "max_runtime_seconds": 3600,
                    "rate_version_id": rate.id,
                    "micro_credits_per_gpu_hour": 2_000_000,
                    "hold_key": f"job:{job_id}:hold",
                    "hold_micro": 4_000_000,
                    "state": JobState.RUNNING.value,
                    "attempt": 1,
                    "placement_json": '[["gpu-0", 2]]',
                    "submitted_by": researcher.label,
                    "submitted_at": now,
                    "started_at": now,
                    "charged_micro": 0,
                    "overage_micro": 0,
                }
                for job_id in range(1, jobs + 1)
            ],
        )
        session.execute(
            insert(JobRun),
            [
                {
                    "job_id": job_id,
                    "attempt": 1,
                    "placement_json": '[["gpu-0", 2]]',
                    "gpus": 2,
                    "started_at": now,
                    "seen_running_at": now,
                }
                for job_id in range(1, jobs + 1)
            ],
        )
    return factory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    emu = K8sEmulator(record_events=False).start()
    emu.add_namespace(NAMESPACE)
    fill(emu, args.jobs)
    tracemalloc.start()
    executor = make_executor(emu)
    try:
        t0 = time.perf_counter()
        executor.observe([])  # start-up: list Jobs and pods, start the watches
        t1 = time.perf_counter()
        seen = executor.observe(range(1, args.jobs + 1))
        t2 = time.perf_counter()
        # Tracing allocations slows Python several times over: the reconcile is
        # timed without it, after the executor's peak has been read.
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        with tempfile.TemporaryDirectory() as directory:
            factory = running_jobs_in_database(args.jobs, directory)
            t3 = time.perf_counter()
            report = reconcile(factory, executor)
            t4 = time.perf_counter()
    finally:
        executor.close()
        emu.stop()
    if report.transitions:
        raise SystemExit(f"the sweep moved jobs it should not have: {report.transitions[:5]}")
    running = sum(1 for o in seen.values() if o.phase is Phase.RUNNING)
    if running != args.jobs:
        raise SystemExit(f"only {running} of {args.jobs} jobs observed running")
    print(
        f"jobs={args.jobs} list_s={t1 - t0:.2f} sweep_s={t2 - t1:.3f} "
        f"reconcile_s={t4 - t3:.3f} peak_mib={peak / 2**20:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
