"""DCGM exporter scraping: the exporter's text format, and telemetry per job."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from credits.metering.telemetry import (
    GpuSample,
    JobTelemetry,
    TelemetryAggregator,
    TelemetryError,
    energy_delta_mj,
    parse_exporter_text,
    scrape,
)

DATA = Path(__file__).parent / "data"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
JOBS = {("credits-jobs", "job-17-attempt-1"): 17, ("credits-jobs", "job-21-attempt-2"): 21}


def fixture_text(name: str) -> str:
    return (DATA / name).read_text()


def by_gpu(samples: list[GpuSample]) -> dict[int, GpuSample]:
    return {sample.gpu: sample for sample in samples}


def gpu(index: int, *, energy_mj: int | None, util: float = 50.0, fb: float = 1000.0) -> GpuSample:
    return GpuSample(
        gpu=index,
        uuid=f"GPU-{index}",
        hostname="node",
        namespace="credits-jobs",
        pod="job-17-attempt-1",
        gpu_util_percent=util,
        fb_used_mib=fb,
        energy_mj=energy_mj,
    )


# --- parsing ---------------------------------------------------------------


def test_parse_groups_the_four_metrics_of_each_gpu_into_one_sample() -> None:
    samples = parse_exporter_text(fixture_text("dcgm_node_a_t0.txt"))

    assert [sample.gpu for sample in samples] == [0, 1, 2, 3]
    assert samples[0] == GpuSample(
        gpu=0,
        uuid="GPU-3f1e9c2a-5b7d-4e80-9a61-0c2d4b8e7f10",
        hostname="gpu-node-a",
        model_name="NVIDIA H100 80GB HBM3",
        namespace="credits-jobs",
        pod="job-17-attempt-1",
        container="main",
        gpu_util_percent=90.0,
        fb_used_mib=40000.0,
        energy_mj=981234567890,
        power_w=612.345,
    )


def test_parse_keeps_a_gpu_without_pod_labels_with_pod_none() -> None:
    idle = by_gpu(parse_exporter_text(fixture_text("dcgm_node_a_t0.txt")))[3]

    assert (idle.namespace, idle.pod, idle.container) == (None, None, None)
    assert idle.hostname == "gpu-node-a"
    assert idle.energy_mj == 402000000000


def test_parse_prefers_exported_pod_labels_over_the_exporters_own() -> None:
    samples = by_gpu(parse_exporter_text(fixture_text("dcgm_exported_labels.txt")))

    busy, idle = samples[0], samples[1]
    assert (busy.namespace, busy.pod, busy.container) == (
        "credits-jobs",
        "job-21-attempt-2",
        "trainer",
    )
    # Empty exported_* labels: the plain ones name the exporter, not a workload.
    assert (idle.namespace, idle.pod) == ("gpu-operator", "nvidia-dcgm-exporter-x7k2p")


def test_parse_keeps_an_unrenamed_plain_label_beside_exported_pod() -> None:
    text = (
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",namespace="credits-jobs",'
        'pod="dcgm-exporter-1",exported_pod="job-17-attempt-1"} 12\n'
    )

    [sample] = parse_exporter_text(text)

    assert (sample.namespace, sample.pod) == ("credits-jobs", "job-17-attempt-1")


def test_parse_reads_lowercase_hostname_and_empty_pod_labels_of_older_exporters() -> None:
    samples = by_gpu(parse_exporter_text(fixture_text("dcgm_lowercase_hostname.txt")))

    assert samples[0].hostname == "t4-workstation"
    assert (samples[0].namespace, samples[0].pod) == ("default", "job-33-attempt-1")
    assert samples[0].gpu_util_percent == 37.0
    assert samples[0].energy_mj == 55500000000
    assert (samples[1].namespace, samples[1].pod, samples[1].container) == (None, None, None)


def test_parse_splits_a_time_sliced_gpu_into_one_sample_per_pod() -> None:
    text = (
        "# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n"
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",Hostname="h",namespace="n",pod="p1"} 40\n'
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",Hostname="h",namespace="n",pod="p2"} 40\n'
    )

    assert [sample.pod for sample in parse_exporter_text(text)] == ["p1", "p2"]


def test_parse_leaves_out_figures_the_exporter_could_not_read() -> None:
    text = (
        'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a"} 7\n'
        'DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-a"} NaN\n'
    )

    [sample] = parse_exporter_text(text)

    assert sample.gpu_util_percent == 7.0
    assert sample.power_w is None
    assert sample.energy_mj is None
    assert sample.fb_used_mib is None


def test_parse_of_text_without_gpu_metrics_is_empty() -> None:
    assert parse_exporter_text("# HELP up Up.\n# TYPE up gauge\nup 1\n") == []
    assert parse_exporter_text("") == []


@pytest.mark.parametrize(
    "text",
    [
        "<html><body>502 Bad Gateway</body></html>\n",
        'DCGM_FI_DEV_GPU_UTIL{gpu="0" 5\n',
        'DCGM_FI_DEV_GPU_UTIL{gpu="0"} five\n',
    ],
    ids=["html", "unclosed-labels", "non-numeric-value"],
)
def test_parse_refuses_text_that_is_not_prometheus_format(text: str) -> None:
    with pytest.raises(TelemetryError, match="not Prometheus text format"):
        parse_exporter_text(text)


def test_parse_refuses_a_gpu_metric_without_a_gpu_index() -> None:
    with pytest.raises(TelemetryError, match="numeric gpu label"):
        parse_exporter_text('DCGM_FI_DEV_FB_USED{UUID="GPU-a"} 5\n')


# --- scraping over HTTP ------------------------------------------------------


@pytest.fixture
def exporter() -> Iterator[str]:
    """A stand-in exporter on 127.0.0.1 serving a fixture on /metrics, 404 elsewhere."""
    body = fixture_text("dcgm_node_a_t0.txt").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/metrics" else 404
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body if status == 200 else b"not found")

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest's output clean

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_scrape_reads_an_exporter_over_http(exporter: str) -> None:
    samples = scrape(f"{exporter}/metrics")

    assert [sample.gpu for sample in samples] == [0, 1, 2, 3]


def test_scrape_reports_an_http_error_status(exporter: str) -> None:
    with pytest.raises(TelemetryError, match="answered HTTP 404"):
        scrape(f"{exporter}/nothing")


def test_scrape_reports_an_unreachable_exporter() -> None:
    # Port 9 (discard) on loopback: nothing listens there in a test run.
    with pytest.raises(TelemetryError, match="unreachable"):
        scrape("http://127.0.0.1:9/metrics", timeout_s=2)


def test_scrape_refuses_urls_that_are_not_http() -> None:
    with pytest.raises(TelemetryError, match="http or https"):
        scrape("file:///etc/passwd")


# --- energy counter ------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "delta"),
    [
        (None, 5_000, 0),  # first sample of a GPU
        (5_000, None, 0),  # the scrape lacked the figure
        (5_000, 8_000, 3_000),
        (5_000, 5_000, 0),
        (9_000_000, 1_200, 1_200),  # counter restarted: the new value counts from 0
    ],
)
def test_energy_delta(previous: int | None, current: int | None, delta: int) -> None:
    assert energy_delta_mj(previous, current) == delta


# --- aggregation per job ---------------------------------------------------------


def test_two_scrapes_give_energy_mean_utilisation_and_peak_memory_per_job() -> None:
    aggregator = TelemetryAggregator()
    for offset, name in ((0, "dcgm_node_a_t0.txt"), (30, "dcgm_node_a_t30.txt")):
        samples = parse_exporter_text(fixture_text(name))
        aggregator.add_scrape(samples, T0 + timedelta(seconds=offset), JOBS)

    [job] = aggregator.snapshot().values()
    assert job.job_id == 17
    assert (job.samples, job.gpus) == (4, 2)  # two GPUs, two scrapes
    assert job.mean_gpu_util_percent == pytest.approx((90 + 70 + 100 + 50) / 4)
    assert job.peak_fb_used_mib == 52000.0
    # GPU 0 at 600 W and GPU 1 at 590 W for 30 s; the first scrape gives no delta.
    assert job.energy_mj == 18_000_000 + 17_700_000
    assert job.energy_joules == pytest.approx(35_700.0)
    assert (job.first_at, job.last_at) == (T0, T0 + timedelta(seconds=30))


def test_samples_of_unknown_pods_and_idle_gpus_count_as_unmatched() -> None:
    aggregator = TelemetryAggregator()

    aggregator.add_scrape(parse_exporter_text(fixture_text("dcgm_node_a_t0.txt")), T0, JOBS)

    # GPU 2 is a notebook pod no job owns; GPU 3 has no pod at all.
    assert aggregator.unmatched == 2
    assert set(aggregator.snapshot()) == {17}


def test_exported_pod_labels_map_to_the_job() -> None:
    aggregator = TelemetryAggregator()

    aggregator.add_scrape(parse_exporter_text(fixture_text("dcgm_exported_labels.txt")), T0, JOBS)

    assert aggregator.snapshot()[21].mean_gpu_util_percent == 64.0
    assert aggregator.unmatched == 1


def test_a_counter_reset_counts_the_new_value_from_zero() -> None:
    aggregator = TelemetryAggregator()
    readings = [1_000_000, 1_600_000, 250_000, 400_000]  # the driver reloaded after the second

    for step, energy in enumerate(readings):
        aggregator.add_scrape([gpu(0, energy_mj=energy)], T0 + timedelta(seconds=step), JOBS)

    assert aggregator.snapshot()[17].energy_mj == 600_000 + 250_000 + 150_000


def test_a_scrape_without_the_energy_figure_loses_no_energy() -> None:
    aggregator = TelemetryAggregator()
    readings = [1_000, None, 4_000]

    for step, energy in enumerate(readings):
        aggregator.add_scrape([gpu(0, energy_mj=energy)], T0 + timedelta(seconds=step), JOBS)

    assert aggregator.snapshot()[17].energy_mj == 3_000


def test_the_same_scrape_added_twice_counts_once() -> None:
    aggregator = TelemetryAggregator()
    first = [gpu(0, energy_mj=1_000, util=10)]
    second = [gpu(0, energy_mj=3_000, util=30)]

    aggregator.add_scrape(first, T0, JOBS)
    aggregator.add_scrape(second, T0 + timedelta(seconds=10), JOBS)
    aggregator.add_scrape(second, T0 + timedelta(seconds=10), JOBS)
    aggregator.add_scrape(first, T0, JOBS)  # late, older than what was counted

    job = aggregator.snapshot()[17]
    assert (job.samples, job.energy_mj, job.mean_gpu_util_percent) == (2, 2_000, 20.0)


def test_merge_combines_exporters_and_keeps_its_inputs_unchanged() -> None:
    node_a, node_b = TelemetryAggregator(), TelemetryAggregator()
    node_a.add_scrape([gpu(0, energy_mj=0, util=80, fb=100)], T0, JOBS)
    node_a.add_scrape([gpu(0, energy_mj=500, util=60, fb=300)], T0 + timedelta(seconds=5), JOBS)
    other_gpu = GpuSample(
        gpu=0,
        uuid="GPU-b",
        hostname="node-b",
        namespace="credits-jobs",
        pod="job-17-attempt-1",
        gpu_util_percent=20.0,
        fb_used_mib=900.0,
        energy_mj=7_000,
    )
    node_b.add_scrape([other_gpu], T0 + timedelta(seconds=1), JOBS)
    node_b.add_scrape([replace(other_gpu, energy_mj=7_700)], T0 + timedelta(seconds=9), {})

    merged = node_a.merge(node_b)
    merged.add_scrape([gpu(0, energy_mj=900, util=40)], T0 + timedelta(seconds=10), JOBS)

    job = merged.snapshot()[17]
    assert (job.samples, job.gpus, job.energy_mj) == (4, 2, 500 + 400)
    assert job.mean_gpu_util_percent == pytest.approx((80 + 60 + 20 + 40) / 4)
    assert job.peak_fb_used_mib == 1000.0  # the last scrape's gpu() default
    assert (job.first_at, job.last_at) == (T0, T0 + timedelta(seconds=10))
    assert merged.unmatched == 1
    assert node_a.snapshot()[17].samples == 2  # the merge did not touch its input


def test_job_telemetry_refuses_to_merge_another_job() -> None:
    seventeen = JobTelemetry(17, first_at=T0, last_at=T0)

    with pytest.raises(ValueError, match="cannot merge job 21"):
        seventeen.merge(JobTelemetry(21, first_at=T0, last_at=T0))


def test_a_job_without_utilisation_or_memory_figures_reports_none() -> None:
    aggregator = TelemetryAggregator()
    bare = GpuSample(gpu=0, namespace="credits-jobs", pod="job-17-attempt-1")

    aggregator.add_scrape([bare], T0, JOBS)

    job = aggregator.snapshot()[17]
    assert (job.mean_gpu_util_percent, job.peak_fb_used_mib, job.energy_mj) == (None, None, 0)


def test_scrape_times_must_be_timezone_aware() -> None:
    naive = datetime(2025, 3, 1, 12, 0)  # noqa: DTZ001 - the naive time under test

    with pytest.raises(ValueError, match="timezone-aware"):
        TelemetryAggregator().add_scrape([gpu(0, energy_mj=1)], naive, JOBS)


def test_parse_keeps_large_energy_counters_exact_and_figures_as_float() -> None:
    # Past 2**53 mJ a float would round; the exporter prints the counter as an integer.
    text = (
        'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0"} 9007199254740993\n'
        'DCGM_FI_DEV_GPU_UTIL{gpu="0"} 90\n'
    )

    [sample] = parse_exporter_text(text)

    assert sample.energy_mj == 9007199254740993
    assert isinstance(sample.gpu_util_percent, float)
