"""Every manifest under k8s/ is a valid Kubernetes object (kubernetes-validate, strict),
and the RBAC, Pod Security and NetworkPolicy objects of the kustomize base say what
docs/kubernetes.md says. The rendered overlays are checked in tests/deploy/test_kustomize.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S_DIR = Path(__file__).resolve().parents[1] / "k8s"
BASE_DIR = K8S_DIR / "base"
K8S_VERSION = "1.30"
# kustomization.yaml files configure kustomize; they are not objects of the API.
FILES = sorted(p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")
JOBS_NAMESPACE = "credits-jobs"


def _file_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _documents(name: str) -> list[dict[str, Any]]:
    return _file_documents(BASE_DIR / name)


def _all_documents() -> list[dict[str, Any]]:
    return [d for path in FILES for d in _file_documents(path)]


def test_there_are_manifests() -> None:
    assert FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(K8S_DIR)))
def test_manifest_file_is_valid(path: Path) -> None:
    documents = _file_documents(path)
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_executor_role_grants_only_what_the_executor_uses() -> None:
    (role,) = [d for d in _documents("rbac.yaml") if d["kind"] == "Role"]
    assert role["metadata"]["namespace"] == JOBS_NAMESPACE
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("batch",), ("jobs",)): {"create", "get", "list", "watch", "patch", "delete"},
        (("",), ("pods",)): {"get", "list", "watch", "delete"},
        (("",), ("pods/log",)): {"get"},
        (("",), ("services",)): {"create", "get", "delete"},
        (("networking.k8s.io",), ("networkpolicies",)): {"create", "delete"},
    }


def test_cluster_role_reads_nodes_and_no_pods() -> None:
    cluster_roles = [d for d in _all_documents() if d["kind"] == "ClusterRole"]
    assert len(cluster_roles) == 1
    (rule,) = cluster_roles[0]["rules"]
    assert (rule["apiGroups"], rule["resources"]) == ([""], ["nodes"])
    assert set(rule["verbs"]) == {"get", "list", "watch"}


def test_jobs_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespaces = {d["metadata"]["name"]: d for d in _documents("namespace.yaml")}
    labels = namespaces[JOBS_NAMESPACE]["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == f"v{K8S_VERSION}"


def _policies() -> dict[str, dict[str, Any]]:
    policies = [d for d in _documents("networkpolicies.yaml") if d["kind"] == "NetworkPolicy"]
    assert all(p["metadata"]["namespace"] == JOBS_NAMESPACE for p in policies)
    return {p["metadata"]["name"]: p["spec"] for p in policies}


def test_jobs_namespace_denies_all_traffic_by_default() -> None:
    policies = _policies()
    deny = policies["default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # Nothing else lets traffic in: ingress is only ever a gang's own policy.
    assert not any(spec.get("ingress") for spec in policies.values())
    assert all(
        "Ingress" not in spec["policyTypes"] for n, spec in policies.items() if n != "default-deny"
    )


def test_jobs_may_resolve_names_and_reach_the_internet_but_not_the_cluster() -> None:
    policies = _policies()
    (dns,) = policies["allow-dns"]["egress"]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    (internet,) = policies["allow-internet-egress"]["egress"]
    assert "ports" not in internet
    blocks = {b["ipBlock"]["cidr"]: set(b["ipBlock"]["except"]) for b in internet["to"]}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= blocks[
        "0.0.0.0/0"
    ]
    assert {"fc00::/7", "fe80::/10"} <= blocks["::/0"]
