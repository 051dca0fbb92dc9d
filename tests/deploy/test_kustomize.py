"""Each kustomize overlay under k8s/overlays renders with ``kubectl kustomize`` into
valid Kubernetes objects (kubernetes-validate, strict) that keep what the platform
and the jobs namespace rely on: locked-down containers, the web probes, one beat,
the migrations Job applied first, no secret value, and the executor's RBAC."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import missing_service

K8S_DIR = Path(__file__).resolve().parents[2] / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S_DIR / "overlays").glob("*/kustomization.yaml"))
K8S_VERSION = "1.30"
ROLLOUT_LABEL = "credits.dev/rollout"
Manifest = dict[str, Any]


@cache
def _rendered(overlay: str) -> tuple[Manifest, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        missing_service("kubectl (with kustomize) is not installed: CI renders the overlays")
    output = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(output) if d)


def _of_kind(overlay: str, kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in _rendered(overlay) if d["kind"] == kind}


def _pod_specs(overlay: str) -> dict[str, Manifest]:
    workloads = {**_of_kind(overlay, "Deployment"), **_of_kind(overlay, "Job")}
    return {name: w["spec"]["template"]["spec"] for name, w in workloads.items()}


def test_there_are_a_staging_and_a_production_overlay() -> None:
    assert {"staging", "production"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_is_valid_kubernetes(overlay: str) -> None:
    documents = _rendered(overlay)
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_as_non_root_with_no_capabilities(overlay: str) -> None:
    specs = _pod_specs(overlay)
    assert set(specs) == {"credits-web", "credits-worker", "credits-beat", "credits-migrate"}
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["readOnlyRootFilesystem"] is True, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_a_pinned_image(overlay: str) -> None:
    for name, spec in _pod_specs(overlay).items():
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{name}: {image} has no tag"
            assert not image.endswith(":latest"), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_has_liveness_on_healthz_readiness_on_readyz_a_budget_and_a_service(
    overlay: str,
) -> None:
    (web,) = _pod_specs(overlay)["credits-web"]["containers"]
    assert web["args"] == ["web"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    selector = _of_kind(overlay, "Deployment")["credits-web"]["spec"]["selector"]["matchLabels"]
    budget = _of_kind(overlay, "PodDisruptionBudget")["credits-web"]["spec"]
    assert budget["selector"]["matchLabels"] == selector
    replicas = _of_kind(overlay, "Deployment")["credits-web"]["spec"]["replicas"]
    assert 1 <= budget["minAvailable"] < replicas  # a drain can always proceed
    assert _of_kind(overlay, "Service")["credits-web"]["spec"]["selector"] == selector
    (rule,) = _of_kind(overlay, "Ingress")["credits-web"]["spec"]["rules"]
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "credits-web"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_exactly_one_beat_replaced_by_recreate(overlay: str) -> None:
    beat = _of_kind(overlay, "Deployment")["credits-beat"]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}
    assert beat["template"]["spec"]["containers"][0]["args"] == ["beat"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_rendered(overlay: str) -> None:
    assert not _of_kind(overlay, "Secret")
    for name, spec in _pod_specs(overlay).items():
        (container,) = spec["containers"]
        references = [source.get("secretRef", {}).get("name") for source in container["envFrom"]]
        assert "credits-settings" in references, name
        assert not any("value" in v and "KEY" in v["name"] for v in container.get("env", []))
    (config,) = _of_kind(overlay, "ConfigMap").values()
    assert not any(
        word in key for key in config["data"] for word in ("SECRET", "PASSWORD", "TOKEN")
    )
    assert config["data"]["CREDITS_PROFILE"] == "production"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_what_the_migrations_job_needs_is_applied_before_the_rollout(overlay: str) -> None:
    before = {
        (d["kind"], d["metadata"]["name"])
        for d in _rendered(overlay)
        if d["metadata"].get("labels", {}).get(ROLLOUT_LABEL) == "before"
    }
    (config,) = _of_kind(overlay, "ConfigMap")
    assert before == {
        ("Namespace", "credits"),
        ("Namespace", "credits-jobs"),
        ("ServiceAccount", "credits"),
        ("ConfigMap", config),
        ("Job", "credits-migrate"),
    }
    job = _of_kind(overlay, "Job")["credits-migrate"]["spec"]
    assert job["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_keeps_the_jobs_namespace_policies_rbac_and_checkpoint_claim(
    overlay: str,
) -> None:
    namespaces = _of_kind(overlay, "Namespace")
    for namespace in ("credits", "credits-jobs"):
        labels = namespaces[namespace]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    jobs_objects = [
        d for d in _rendered(overlay) if d["metadata"].get("namespace") == "credits-jobs"
    ]
    assert {(d["kind"], d["metadata"]["name"]) for d in jobs_objects} == {
        ("NetworkPolicy", "default-deny"),
        ("NetworkPolicy", "allow-dns"),
        ("NetworkPolicy", "allow-internet-egress"),
        ("Role", "credits-executor"),
        ("RoleBinding", "credits-executor"),
        ("PersistentVolumeClaim", "credits-checkpoints"),
    }
    (subject,) = _of_kind(overlay, "RoleBinding")["credits-executor"]["subjects"]
    assert (subject["name"], subject["namespace"]) == ("credits", "credits")
    (config,) = _of_kind(overlay, "ConfigMap").values()
    assert config["data"]["CREDITS_KUBERNETES_NAMESPACE"] == "credits-jobs"
    assert config["data"]["CREDITS_KUBERNETES_CHECKPOINT_CLAIM"] == "credits-checkpoints"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_web_port_takes_connections_in_the_platform_namespace(overlay: str) -> None:
    policies = {
        name: policy["spec"]
        for name, policy in _of_kind(overlay, "NetworkPolicy").items()
        if policy["metadata"]["namespace"] == "credits"
    }
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    web = policies["web-ingress"]
    selector = _of_kind(overlay, "Deployment")["credits-web"]["spec"]["selector"]["matchLabels"]
    assert web["podSelector"]["matchLabels"] == selector
    (rule,) = web["ingress"]
    (container,) = _pod_specs(overlay)["credits-web"]["containers"]
    assert rule["ports"] == [{"protocol": "TCP", "port": container["ports"][0]["containerPort"]}]
    assert all(spec["policyTypes"] == ["Ingress"] for spec in policies.values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_web_and_worker_mount_the_api_token(overlay: str) -> None:
    mounted = {
        name
        for name, spec in _pod_specs(overlay).items()
        if spec.get("automountServiceAccountToken", True)
    }
    assert mounted == {"credits-web", "credits-worker"}
