"""Scale check of the Kubernetes executor: one observe sweep over 10,000 running jobs.

The emulator (tests/k8s) holds N running Jobs with one Running pod each, written
straight into its store; a fresh executor lists them (its start-up), then one
observe of every job id is timed, as the reconciler's observe step makes it.
Prints ``jobs=N list_s=… sweep_s=… peak_mib=…`` (peak: tracemalloc, this process,
the emulator's own store included).

    .venv/bin/python scripts/bench/k8s_reconcile.py --jobs 10000
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "k8s"))

from k8s_emulator import K8sEmulator
from k8s_kube import NAMESPACE, make_executor, request
from k8s_pods import pod_from_template, running_status

from credits.jobs.executors.base import Phase
from credits.jobs.manifests import ManifestOptions, job_manifest


def fill(emu: K8sEmulator, jobs: int) -> None:
    options = ManifestOptions(namespace=NAMESPACE, instance="credits")
    started = emu.clock.iso()
    with emu.store.lock:
        for job_id in range(1, jobs + 1):
            job = emu.store.create("jobs", job_manifest(request(job_id), options))
            pod = pod_from_template(job, None)
            pod["metadata"]["name"] = f"{job['metadata']['name']}-x"
            pod["spec"]["nodeName"] = f"gpu-{job_id // 4}"
            pod["status"] = running_status(pod, started, "10.0.0.1")
            emu.store.create("pods", pod)


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
        _, peak = tracemalloc.get_traced_memory()
    finally:
        executor.close()
        emu.stop()
    running = sum(1 for o in seen.values() if o.phase is Phase.RUNNING)
    if running != args.jobs:
        raise SystemExit(f"only {running} of {args.jobs} jobs observed running")
    print(
        f"jobs={args.jobs} list_s={t1 - t0:.2f} sweep_s={t2 - t1:.3f} peak_mib={peak / 2**20:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
