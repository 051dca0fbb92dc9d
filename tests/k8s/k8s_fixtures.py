"""Pytest fixtures for the Kubernetes API emulator: ``k8s_emu`` (a started emulator) and
``k8s_api`` (a real ApiClient bound to it). A test module loads them with

    pytest_plugins = ["k8s_fixtures"]

rather than importing them (an imported fixture shadows the test's parameter for ruff,
and an imported module can no longer have its asserts rewritten by pytest).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from k8s_emulator import K8sEmulator
from kubernetes import client


@pytest.fixture
def k8s_emu() -> Iterator[K8sEmulator]:
    """A started emulator (namespaces default and kube-system, no nodes), stopped after."""
    emulator = K8sEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()
        assert not emulator.errors, f"emulator bugs answered as 500: {emulator.errors!r}"


@pytest.fixture
def k8s_api(k8s_emu: K8sEmulator) -> Iterator[client.ApiClient]:
    """A real ``kubernetes.client.ApiClient`` talking to ``k8s_emu`` over HTTP."""
    api_client = k8s_emu.api_client()
    try:
        yield api_client
    finally:
        api_client.close()  # type: ignore[no-untyped-call]
