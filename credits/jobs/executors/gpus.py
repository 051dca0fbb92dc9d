"""Which GPU slots this host has: nvidia-smi's indexes, or virtual ones without it."""

from __future__ import annotations

import shutil
import subprocess

# nvidia-smi can hang on a wedged driver; a host that slow to answer has no usable GPUs.
NVIDIA_SMI_TIMEOUT_S = 15.0


def discover_gpu_slots(virtual_slots: int) -> list[str]:
    """The indexes nvidia-smi lists, else ``["0", ..., str(virtual_slots - 1)]``.

    The virtual slots let the local executor run jobs on a machine with no GPU
    (a laptop, CI); such a job sees CUDA_VISIBLE_DEVICES but no device.
    """
    if virtual_slots < 0:
        raise ValueError(f"virtual_slots must not be negative; got {virtual_slots}")
    return _nvidia_smi_indexes() or [str(index) for index in range(virtual_slots)]


def _nvidia_smi_indexes() -> list[str]:
    """The GPU indexes nvidia-smi reports; [] when it is absent, fails or says nothing."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return []
    try:
        result = subprocess.run(  # noqa: S603 - a fixed query to the program found on PATH
            [program, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    indexes = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not all(index.isdigit() for index in indexes):
        return []
    return indexes
