"""The NVML reader: the real library on this host, and the mapping through a fake.

The fake raises pynvml's own error classes, so that what read_nvml catches is
what the real library throws.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pynvml  # type: ignore[import-untyped]
import pytest

from credits.metering.nvml import read_nvml
from credits.metering.telemetry import GpuSample, TelemetryError, TelemetryUnavailable

MIB = 1024 * 1024


@dataclass
class FakeDevice:
    uuid: str | bytes
    util_gpu: int
    memory_used: int  # bytes
    energy_mj: int | None  # None: the GPU does not support the field
    power_mw: int | None
    lost: bool = False


@dataclass
class _Utilization:
    gpu: int


@dataclass
class _Memory:
    used: int


@dataclass
class FakeNvml:
    """The slice of pynvml that read_nvml calls, over a list of devices."""

    devices: list[FakeDevice] = field(default_factory=list)
    init_error: int | None = None  # an NVML_ERROR_* code nvmlInit fails with
    calls: list[str] = field(default_factory=list)

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's name
        self.calls.append("init")
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:  # noqa: N802 - NVML's name
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - NVML's name
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:  # noqa: N802 - NVML's name
        return self.devices[index]

    def nvmlDeviceGetUUID(self, handle: object) -> str | bytes:  # noqa: N802 - NVML's name
        return self._device(handle).uuid

    def nvmlDeviceGetUtilizationRates(self, handle: object) -> _Utilization:  # noqa: N802 - NVML's name
        return _Utilization(gpu=self._device(handle).util_gpu)

    def nvmlDeviceGetMemoryInfo(self, handle: object) -> _Memory:  # noqa: N802 - NVML's name
        return _Memory(used=self._device(handle).memory_used)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:  # noqa: N802 - NVML's name
        return _supported(self._device(handle).energy_mj)

    def nvmlDeviceGetPowerUsage(self, handle: object) -> int:  # noqa: N802 - NVML's name
        return _supported(self._device(handle).power_mw)

    def _device(self, handle: object) -> FakeDevice:
        assert isinstance(handle, FakeDevice)
        if handle.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return handle


def _supported(value: int | None) -> int:
    if value is None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    return value


def test_read_nvml_on_this_host() -> None:
    """Without an NVIDIA driver (CI, laptops) the real library refuses to start;
    with one, every GPU comes back with its host and no pod."""
    if not Path("/dev/nvidiactl").exists():
        with pytest.raises(TelemetryUnavailable, match="NVML could not start"):
            read_nvml()
        return
    samples = read_nvml()
    assert all(sample.pod is None for sample in samples)
    assert all(sample.hostname == socket.gethostname() for sample in samples)


def test_read_nvml_maps_each_device_to_a_sample() -> None:
    nvml = FakeNvml(
        devices=[
            FakeDevice("GPU-aaaa", 87, 40_000 * MIB, 123_456_789, 612_345),
            FakeDevice(b"GPU-bbbb", 0, 512 * MIB + MIB // 2, 5_000, 70_000),
        ]
    )

    samples = read_nvml(nvml)

    assert samples == [
        GpuSample(
            gpu=0,
            uuid="GPU-aaaa",
            hostname=socket.gethostname(),
            gpu_util_percent=87.0,
            fb_used_mib=40_000.0,
            energy_mj=123_456_789,
            power_w=612.345,
        ),
        GpuSample(
            gpu=1,
            uuid="GPU-bbbb",  # older drivers hand back bytes
            hostname=socket.gethostname(),
            gpu_util_percent=0.0,
            fb_used_mib=512.5,
            energy_mj=5_000,
            power_w=70.0,
        ),
    ]
    assert nvml.calls == ["init", "shutdown"]


def test_read_nvml_leaves_unsupported_figures_out() -> None:
    nvml = FakeNvml(devices=[FakeDevice("GPU-old", 12, MIB, energy_mj=None, power_mw=None)])

    [sample] = read_nvml(nvml)

    assert (sample.energy_mj, sample.power_w) == (None, None)
    assert sample.gpu_util_percent == 12.0


def test_read_nvml_on_a_host_with_no_gpus_is_empty() -> None:
    assert read_nvml(FakeNvml()) == []


@pytest.mark.parametrize(
    "code",
    [
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_NO_PERMISSION,
    ],
    ids=["library-not-found", "driver-not-loaded", "no-permission"],
)
def test_read_nvml_when_nvml_cannot_start_is_unavailable(code: int) -> None:
    nvml = FakeNvml(init_error=code)

    with pytest.raises(TelemetryUnavailable, match="NVML could not start"):
        read_nvml(nvml)
    assert nvml.calls == ["init"]  # nothing to shut down


def test_read_nvml_reports_a_gpu_lost_while_reading_and_still_shuts_down() -> None:
    lost = FakeDevice("GPU-gone", 0, 0, 0, 0, lost=True)
    nvml = FakeNvml(devices=[FakeDevice("GPU-ok", 1, 0, 0, 0), lost])

    with pytest.raises(TelemetryError, match="NVML failed while reading GPUs") as raised:
        read_nvml(nvml)

    assert not isinstance(raised.value, TelemetryUnavailable)
    assert nvml.calls == ["init", "shutdown"]


def test_read_nvml_without_nvidia_ml_py_installed_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "pynvml", None)

    with pytest.raises(TelemetryUnavailable, match="nvidia-ml-py"):
        read_nvml()
