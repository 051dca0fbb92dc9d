"""The ``kube`` fixture: a started emulator with the jobs namespace, two A100 nodes and a
``KubernetesExecutor`` on it (see ``k8s_kube``). Load it with

    pytest_plugins = ["k8s_fixtures", "k8s_executor_fixtures"]
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from k8s_emulator import K8sEmulator
from k8s_kube import A100, NAMESPACE, Kube, make_executor


@pytest.fixture
def kube(k8s_emu: K8sEmulator) -> Iterator[Kube]:
    k8s_emu.add_namespace(NAMESPACE)
    for i in range(2):
        k8s_emu.add_node(f"gpu-{i}", gpus=8, product=A100)
    kube = Kube(k8s_emu, make_executor(k8s_emu))
    try:
        yield kube
    finally:
        kube.executor.close()  # the test may have replaced it (a restart)
