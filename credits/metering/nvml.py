"""GPU telemetry read on this host through NVML, for the local executor.

The same figures the DCGM exporter publishes, read from the driver directly
(``nvidia-ml-py``): a host running jobs without Kubernetes has no exporter.
NVML knows no pods, so every sample has ``pod=None``; the caller ties GPUs to
jobs by slot.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
from collections.abc import Callable
from typing import Protocol, TypeVar

from credits.metering.telemetry import GpuSample, TelemetryError, TelemetryUnavailable

_BYTES_PER_MIB = 1024 * 1024
_T = TypeVar("_T")


class _Utilization(Protocol):
    gpu: int


class _Memory(Protocol):
    used: int


class NvmlModule(Protocol):
    """The part of ``pynvml`` read here; tests pass a fake with the same shape.

    The names are NVML's own, so that the real module fits.
    """

    NVMLError: type[Exception]
    NVMLError_NotSupported: type[Exception]

    def nvmlInit(self) -> None: ...  # noqa: N802 - NVML's name
    def nvmlShutdown(self) -> None: ...  # noqa: N802 - NVML's name
    def nvmlDeviceGetCount(self) -> int: ...  # noqa: N802 - NVML's name
    def nvmlDeviceGetHandleByIndex(self, index: int) -> object: ...  # noqa: N802 - NVML's name
    def nvmlDeviceGetUUID(self, handle: object) -> str | bytes: ...  # noqa: N802 - NVML's name
    def nvmlDeviceGetUtilizationRates(self, handle: object) -> _Utilization: ...  # noqa: N802 - NVML's name
    def nvmlDeviceGetMemoryInfo(self, handle: object) -> _Memory: ...  # noqa: N802 - NVML's name
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int: ...  # noqa: N802 - NVML's name
    def nvmlDeviceGetPowerUsage(self, handle: object) -> int: ...  # noqa: N802 - NVML's name


def read_nvml(nvml: NvmlModule | None = None) -> list[GpuSample]:
    """One sample per GPU on this host: utilisation, memory, energy counter, power.

    A figure the GPU does not support (energy before Volta, power on some boards)
    is None. Raises TelemetryUnavailable when NVML cannot start (no library, no
    driver, no GPU access) and TelemetryError when a GPU fails while being read.
    """
    nvml = nvml or _load_pynvml()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        raise TelemetryUnavailable(f"NVML could not start: {error}") from error
    try:
        hostname = socket.gethostname()
        return [_read_device(nvml, index, hostname) for index in range(nvml.nvmlDeviceGetCount())]
    except nvml.NVMLError as error:
        raise TelemetryError(f"NVML failed while reading GPUs: {error}") from error
    finally:
        _shutdown(nvml)


def _load_pynvml() -> NvmlModule:
    try:
        # Imported by name: pynvml ships no type information; the Protocol above
        # is what this module relies on, and a missing package is no crash.
        module: NvmlModule = importlib.import_module("pynvml")
    except ImportError as error:
        raise TelemetryUnavailable("nvidia-ml-py (pynvml) is not installed") from error
    return module


def _read_device(nvml: NvmlModule, index: int, hostname: str) -> GpuSample:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    uuid = nvml.nvmlDeviceGetUUID(handle)
    utilization = _supported(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
    memory = _supported(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
    power_mw = _supported(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
    return GpuSample(
        gpu=index,
        uuid=uuid.decode() if isinstance(uuid, bytes) else uuid,  # bytes before 11.x
        hostname=hostname,
        gpu_util_percent=None if utilization is None else float(utilization.gpu),
        fb_used_mib=None if memory is None else memory.used / _BYTES_PER_MIB,
        energy_mj=_supported(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handle),
        power_w=None if power_mw is None else power_mw / 1000,
    )


def _supported(nvml: NvmlModule, read: Callable[[object], _T], handle: object) -> _T | None:
    """The reading, or None where this GPU does not offer it."""
    try:
        return read(handle)
    except nvml.NVMLError_NotSupported:
        return None


def _shutdown(nvml: NvmlModule) -> None:
    # The readings are taken; a failed shutdown loses nothing.
    with contextlib.suppress(nvml.NVMLError):
        nvml.nvmlShutdown()
