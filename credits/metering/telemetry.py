"""GPU telemetry from NVIDIA's DCGM exporter, and its aggregation per job.

The exporter serves Prometheus text on ``/metrics``: one series per GPU and
metric, labelled with the GPU (``gpu``, ``UUID``, ``modelName``, ``Hostname``
or ``hostname``) and, with Kubernetes pod mapping on, the pod that holds it
(``namespace``, ``pod``, ``container``; ``exported_*`` after honorLabels-style
relabelling). Telemetry feeds reports and nudges, never charges: a GPU that is
missing from a scrape costs a job nothing, so parsing is strict about the
format and relaxed about what is absent.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

UTIL_METRIC = "DCGM_FI_DEV_GPU_UTIL"  # percent, 0-100
FB_USED_METRIC = "DCGM_FI_DEV_FB_USED"  # MiB
ENERGY_METRIC = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"  # mJ since boot, a counter
POWER_METRIC = "DCGM_FI_DEV_POWER_USAGE"  # W
# The exporter runs as a pod itself; its bodies are a few hundred KiB, so this
# bounds a misconfigured URL (a file server, a log stream), not a real exporter.
MAX_BODY_BYTES = 32 * 1024 * 1024


class TelemetryError(RuntimeError):
    """Telemetry could not be read or did not follow the exporter's format."""


class TelemetryUnavailable(TelemetryError):
    """This host has no way to read GPU telemetry (no GPU, no driver, no NVML)."""


@dataclass(frozen=True, slots=True)
class GpuSample:
    """All the figures one scrape gave for one GPU (and the pod holding it)."""

    gpu: int
    uuid: str | None = None
    hostname: str | None = None
    model_name: str | None = None
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    gpu_util_percent: float | None = None
    fb_used_mib: float | None = None
    energy_mj: int | None = None
    power_w: float | None = None

    @property
    def gpu_key(self) -> tuple[str, str]:
        """Names the physical GPU across scrapes: its host and UUID (index without one)."""
        return (self.hostname or "", self.uuid or f"index:{self.gpu}")


def parse_exporter_text(text: str) -> list[GpuSample]:
    """The GPUs in one ``/metrics`` body, in the order they first appear.

    Series are grouped by GPU and pod attribution: a time-sliced GPU is reported
    once per sharing pod, and each of those is one sample.

    Raises TelemetryError when the text is not Prometheus text, or one of the
    metrics read here lacks a numeric ``gpu`` label.
    """
    # Keyed by the sample with labels only: frozen, so it hashes by GPU and pod.
    groups: dict[GpuSample, GpuSample] = {}
    try:
        for family in text_string_to_metric_families(text):
            # family.name, not sample.name: the parser renames a counter's
            # samples to ``<name>_total`` when the exporter's name lacks it.
            if family.name not in _METRICS:
                continue
            for sample in family.samples:
                identity = _identity(family.name, sample.labels)
                found = groups.get(identity, identity)
                groups[identity] = _with_value(found, family.name, sample.value)
    except ValueError as error:  # the parser's only complaint about bad text
        raise TelemetryError(f"not Prometheus text format: {error}") from error
    return list(groups.values())


_METRICS = frozenset({UTIL_METRIC, FB_USED_METRIC, ENERGY_METRIC, POWER_METRIC})


def _with_value(sample: GpuSample, metric: str, value: float) -> GpuSample:
    """The sample with one more figure. The parser hands integers back as int,
    exact however large: the energy counter keeps every millijoule."""
    if not math.isfinite(value):  # NaN or Inf: DCGM had no reading; leave the figure out
        return sample
    if metric == ENERGY_METRIC:
        return replace(sample, energy_mj=round(value))
    if metric == UTIL_METRIC:
        return replace(sample, gpu_util_percent=float(value))
    if metric == FB_USED_METRIC:
        return replace(sample, fb_used_mib=float(value))
    return replace(sample, power_w=float(value))


def _identity(metric: str, labels: Mapping[str, str]) -> GpuSample:
    """A sample with the GPU and pod labels of one series and no figures yet."""
    gpu = labels.get("gpu", "")
    if not (gpu.isascii() and gpu.isdigit()):
        raise TelemetryError(f"{metric} series without a numeric gpu label: {dict(labels)}")
    relabelled = bool(labels.get("exported_pod"))
    return GpuSample(
        gpu=int(gpu),
        uuid=_label(labels, "UUID", "uuid"),
        hostname=_label(labels, "Hostname", "hostname"),
        model_name=_label(labels, "modelName"),
        namespace=_workload_label(labels, "namespace", relabelled=relabelled),
        pod=_workload_label(labels, "pod", relabelled=relabelled),
        container=_workload_label(labels, "container", relabelled=relabelled),
    )


def _workload_label(labels: Mapping[str, str], name: str, *, relabelled: bool) -> str | None:
    """The workload's ``name`` label.

    After honorLabels-style relabelling the exported_* labels name the workload
    and the plain ones the exporter's own pod; the set is chosen by
    ``exported_pod`` alone, since mixing the two would invent a pod that never
    existed. A plain label that was not in conflict was not renamed.
    """
    exported = f"exported_{name}"
    if relabelled and exported in labels:
        return _label(labels, exported)
    return _label(labels, name)


def _label(labels: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` with a non-empty value; the exporter writes ``pod=""``
    for an idle GPU."""
    for name in names:
        value = labels.get(name)
        if value:
            return value
    return None


def scrape(url: str, *, timeout_s: float = 5.0) -> list[GpuSample]:
    """Fetches and parses one exporter's ``/metrics``.

    Raises TelemetryError when the URL is not http(s), the exporter cannot be
    reached or answers with an error, or the body is not the exporter's format.
    """
    if not url.startswith(("http://", "https://")):
        raise TelemetryError(f"exporter URL must be http or https: {url!r}")
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})  # noqa: S310 - scheme checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - scheme checked above
            body: bytes = response.read(MAX_BODY_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise TelemetryError(f"exporter {url} answered HTTP {error.code}") from error
    except (urllib.error.URLError, OSError) as error:  # refused, DNS, timeout
        raise TelemetryError(f"exporter {url} unreachable: {error}") from error
    if len(body) > MAX_BODY_BYTES:
        raise TelemetryError(f"exporter {url} sent more than {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TelemetryError(f"exporter {url} sent text that is not UTF-8") from error
    return parse_exporter_text(text)


@dataclass(frozen=True, slots=True)
class JobTelemetryOut:
    """What the telemetry says about one job so far; reports and nudges read this."""

    job_id: int
    samples: int
    gpus: int
    mean_gpu_util_percent: float | None
    peak_fb_used_mib: float | None
    energy_mj: int
    first_at: datetime
    last_at: datetime

    @property
    def energy_joules(self) -> float:
        return self.energy_mj / 1000


@dataclass(frozen=True, slots=True)
class _CounterReading:
    at: datetime
    energy_mj: int | None


@dataclass(slots=True)
class JobTelemetry:
    """Running figures of one job: the mean is kept as sum and count so that
    partial aggregates merge exactly."""

    job_id: int
    first_at: datetime
    last_at: datetime
    samples: int = 0
    util_sum: float = 0.0
    util_count: int = 0
    peak_fb_used_mib: float | None = None
    energy_mj: int = 0
    # The last reading per physical GPU: energy is the sum of counter deltas.
    last_readings: dict[tuple[str, str], _CounterReading] = field(default_factory=dict)

    def add(self, sample: GpuSample, at: datetime) -> bool:
        """Counts one sample; False (and nothing counted) when it is not newer than
        the last one of its GPU, so a scrape added twice or late changes nothing."""
        previous = self.last_readings.get(sample.gpu_key)
        if previous is not None and at <= previous.at:
            return False
        self.samples += 1
        self.first_at, self.last_at = min(self.first_at, at), max(self.last_at, at)
        if sample.gpu_util_percent is not None:
            self.util_sum += sample.gpu_util_percent
            self.util_count += 1
        self.peak_fb_used_mib = _max_or_none(self.peak_fb_used_mib, sample.fb_used_mib)
        last_energy = previous.energy_mj if previous else None
        self.energy_mj += energy_delta_mj(last_energy, sample.energy_mj)
        # A scrape without the figure keeps the last one: the counter only grows,
        # so the next delta covers both intervals.
        energy = last_energy if sample.energy_mj is None else sample.energy_mj
        self.last_readings[sample.gpu_key] = _CounterReading(at, energy)
        return True

    @classmethod
    def empty_like(cls, job: JobTelemetry) -> JobTelemetry:
        return cls(job.job_id, first_at=job.first_at, last_at=job.last_at)

    def merge(self, other: JobTelemetry) -> JobTelemetry:
        """Both aggregates together: from other exporters, or from other windows."""
        if other.job_id != self.job_id:
            raise ValueError(f"cannot merge job {other.job_id} into job {self.job_id}")
        readings = dict(self.last_readings)
        for key, reading in other.last_readings.items():
            if key not in readings or reading.at > readings[key].at:
                readings[key] = reading
        return JobTelemetry(
            job_id=self.job_id,
            first_at=min(self.first_at, other.first_at),
            last_at=max(self.last_at, other.last_at),
            samples=self.samples + other.samples,
            util_sum=self.util_sum + other.util_sum,
            util_count=self.util_count + other.util_count,
            peak_fb_used_mib=_max_or_none(self.peak_fb_used_mib, other.peak_fb_used_mib),
            energy_mj=self.energy_mj + other.energy_mj,
            last_readings=readings,
        )

    def out(self) -> JobTelemetryOut:
        mean = self.util_sum / self.util_count if self.util_count else None
        return JobTelemetryOut(
            job_id=self.job_id,
            samples=self.samples,
            gpus=len(self.last_readings),
            mean_gpu_util_percent=mean,
            peak_fb_used_mib=self.peak_fb_used_mib,
            energy_mj=self.energy_mj,
            first_at=self.first_at,
            last_at=self.last_at,
        )


def energy_delta_mj(previous: int | None, current: int | None) -> int:
    """The energy between two readings of one GPU's counter.

    No delta without both readings (a GPU's first sample, a scrape that lacked
    the figure). A drop means the counter restarted (driver reload, reboot):
    the new value is what was used since, counted from 0.
    """
    if previous is None or current is None:
        return 0
    return current - previous if current >= previous else current


def _max_or_none(a: float | None, b: float | None) -> float | None:
    values = [value for value in (a, b) if value is not None]
    return max(values) if values else None


class TelemetryAggregator:
    """Per-job telemetry from any number of scrapes of any number of exporters.

    A GPU's samples count for a job only while the job's pod holds it; an idle
    GPU or one held by a pod no job owns is counted in ``unmatched``. A GPU
    shared by several pods (time-slicing, MIG) reports its whole energy to each.
    """

    def __init__(self) -> None:
        self._jobs: dict[int, JobTelemetry] = {}
        self.unmatched = 0

    def add_scrape(
        self,
        samples: Iterable[GpuSample],
        at: datetime,
        pod_to_job: Mapping[tuple[str, str], int],
    ) -> None:
        """Counts the samples of one scrape taken at ``at``, jobs found by
        (namespace, pod)."""
        _require_aware(at)
        attributed: list[tuple[int, GpuSample]] = []
        for sample in samples:
            job_id = _job_of(sample, pod_to_job)
            if job_id is None:
                self.unmatched += 1
            else:
                attributed.append((job_id, sample))
        self.add_attributed(attributed, at)

    def add_attributed(self, attributed: Iterable[tuple[int, GpuSample]], at: datetime) -> None:
        """Counts samples already tied to jobs, as the local executor does by GPU
        slot (NVML knows no pods)."""
        _require_aware(at)
        for job_id, sample in attributed:
            job = self._jobs.get(job_id)
            if job is None:
                job = self._jobs[job_id] = JobTelemetry(job_id, first_at=at, last_at=at)
            job.add(sample, at)

    def snapshot(self) -> dict[int, JobTelemetryOut]:
        return {job_id: job.out() for job_id, job in self._jobs.items() if job.samples}

    def merge(self, other: TelemetryAggregator) -> TelemetryAggregator:
        """A new aggregator holding both; neither input changes.

        Meant for disjoint GPUs (one aggregator per exporter) or for carrying on
        from an earlier aggregate: a GPU both have seen keeps the later reading,
        so the next scrape's delta starts from there.
        """
        merged = TelemetryAggregator()
        merged.unmatched = self.unmatched + other.unmatched
        for jobs in (self._jobs, other._jobs):
            for job_id, job in jobs.items():
                known = merged._jobs.get(job_id)
                # Merging into an empty copy keeps the inputs' running figures apart.
                merged._jobs[job_id] = (known or JobTelemetry.empty_like(job)).merge(job)
        return merged


def _require_aware(at: datetime) -> None:
    # Scrapes from several hosts are compared by time; naive times would
    # silently mix zones.
    if at.tzinfo is None:
        raise ValueError("scrape time must be timezone-aware")


def _job_of(sample: GpuSample, pod_to_job: Mapping[tuple[str, str], int]) -> int | None:
    if sample.namespace is None or sample.pod is None:
        return None
    return pod_to_job.get((sample.namespace, sample.pod))
