"""Checks the NVML and DCGM telemetry readers against a real NVIDIA GPU.

Reads every GPU through ``credits.metering.nvml.read_nvml`` twice, a few
seconds apart, while a small matrix-multiply load runs on GPU 0 when torch can
reach CUDA; prints each reading, the energy between them and the mean power
that energy implies (which should sit near the power readings: a check of the
mJ and mW units). nvidia-smi's own figures follow for comparison, and with
``--dcgm-url`` a DCGM exporter's figures too. A host without a GPU is no
failure: the script says so and exits 0.

    .venv/bin/python scripts/device/gpu_telemetry_check.py
    .venv/bin/python scripts/device/gpu_telemetry_check.py --seconds 5 \
        --dcgm-url http://127.0.0.1:9400/metrics

Exit status: 0 checked or no GPU, 1 a reader failed, 2 a package is missing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

# Run from a checkout without installing the project.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

try:
    from credits.metering.nvml import read_nvml
    from credits.metering.telemetry import (
        GpuSample,
        TelemetryAggregator,
        TelemetryError,
        TelemetryUnavailable,
        scrape,
    )
except ImportError as missing:  # pynvml is imported lazily; this is prometheus_client
    print(f"error: {missing}; install the project (pip install -e .) first", file=sys.stderr)
    sys.exit(2)

NVIDIA_SMI_QUERY = "--query-gpu=index,uuid,utilization.gpu,memory.used,power.draw"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time between the readings")
    parser.add_argument("--dcgm-url", help="a DCGM exporter's /metrics URL to scrape as well")
    parser.add_argument("--no-load", action="store_true", help="do not run the torch load")
    args = parser.parse_args(argv)
    try:
        return _check(args.seconds, dcgm_url=args.dcgm_url, load=not args.no_load)
    except TelemetryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _check(seconds: float, *, dcgm_url: str | None, load: bool) -> int:
    _check_nvml(seconds, load=load)
    if dcgm_url:  # an exporter may serve another host's GPUs, so this runs regardless
        _print_dcgm(dcgm_url)
    return 0


def _check_nvml(seconds: float, *, load: bool) -> None:
    try:
        first, first_at = read_nvml(), datetime.now(UTC)
    except TelemetryUnavailable as error:
        print(f"no GPU telemetry on this host: {error}")
        return
    if not first:
        print("no GPU telemetry on this host: NVML found no GPUs")
        return
    with _load_on_gpu0() if load else _nothing():
        time.sleep(seconds)
        second, second_at = read_nvml(), datetime.now(UTC)
    _print_nvml(first, second, (second_at - first_at).total_seconds())
    _print_aggregate(first, first_at, second, second_at)
    _print_nvidia_smi()


def _print_nvml(first: list[GpuSample], second: list[GpuSample], interval_s: float) -> None:
    print(f"source=nvml interval_s={interval_s:.2f}")
    for before, after in zip(first, second, strict=True):
        print(f"  {_line(before)}")
        print(f"  {_line(after)}")
        if before.energy_mj is None or after.energy_mj is None:
            print(f"  gpu={after.gpu} energy_delta_mj=unsupported")
            continue
        delta = after.energy_mj - before.energy_mj
        print(
            f"  gpu={after.gpu} energy_delta_mj={delta} "
            f"mean_power_w_from_energy={delta / 1000 / interval_s:.1f}"
        )


def _line(sample: GpuSample) -> str:
    return (
        f"gpu={sample.gpu} uuid={sample.uuid} util_pct={sample.gpu_util_percent} "
        f"fb_used_mib={_fixed(sample.fb_used_mib)} energy_mj={sample.energy_mj} "
        f"power_w={_fixed(sample.power_w)}"
    )


def _fixed(value: float | None) -> str:
    return "None" if value is None else f"{value:.1f}"


def _print_aggregate(
    first: list[GpuSample], first_at: datetime, second: list[GpuSample], second_at: datetime
) -> None:
    """The aggregator over both readings, as if each GPU ran job 0."""
    aggregator = TelemetryAggregator()
    aggregator.add_attributed([(0, sample) for sample in first], first_at)
    aggregator.add_attributed([(0, sample) for sample in second], second_at)
    for job in aggregator.snapshot().values():
        print(
            f"aggregate samples={job.samples} gpus={job.gpus} "
            f"mean_util_pct={job.mean_gpu_util_percent} "
            f"peak_fb_used_mib={_fixed(job.peak_fb_used_mib)} energy_mj={job.energy_mj}"
        )


def _print_nvidia_smi() -> None:
    program = shutil.which("nvidia-smi")
    if program is None:
        print("source=nvidia-smi absent")
        return
    result = subprocess.run(
        [program, NVIDIA_SMI_QUERY, "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    print("source=nvidia-smi (index, uuid, util %, memory used MiB, power W)")
    for line in (result.stdout or result.stderr).splitlines():
        print(f"  {line.strip()}")


def _print_dcgm(url: str) -> None:
    samples = scrape(url)
    print(f"source=dcgm url={url} gpus={len(samples)}")
    for sample in samples:
        print(f"  {_line(sample)} hostname={sample.hostname} pod={sample.pod}")


@contextmanager
def _load_on_gpu0() -> Iterator[None]:
    """Matrix multiplies on GPU 0 while the block runs, so utilisation and energy
    move; nothing when torch or CUDA is absent."""
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415 - optional
    except ImportError:
        print("load=none (torch not installed)")
        yield
        return
    if not torch.cuda.is_available():
        print("load=none (torch sees no CUDA device)")
        yield
        return
    stop = threading.Event()
    matrix = torch.randn(4096, 4096, device="cuda:0")

    def spin() -> None:
        while not stop.is_set():
            matrix @ matrix  # the work is the point; the product is thrown away
            torch.cuda.synchronize(0)

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    print("load=torch matmul 4096x4096 on cuda:0")
    try:
        yield
    finally:
        stop.set()
        worker.join()


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    sys.exit(main())
