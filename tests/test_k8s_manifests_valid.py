"""Every manifest under k8s/ is a valid Kubernetes object (kubernetes-validate, strict)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S_DIR = Path(__file__).resolve().parents[1] / "k8s"
K8S_VERSION = "1.30"
FILES = sorted(K8S_DIR.glob("*.yaml"))


def test_there_are_manifests() -> None:
    assert FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_manifest_file_is_valid(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_executor_role_grants_only_what_the_executor_uses() -> None:
    documents = list(yaml.safe_load_all((K8S_DIR / "rbac.yaml").read_text()))
    (role,) = [d for d in documents if d["kind"] == "Role"]
    rules = {tuple(r["resources"]): set(r["verbs"]) for r in role["rules"]}
    assert rules[("jobs",)] == {"create", "get", "list", "watch", "patch", "delete"}
    assert rules[("pods",)] == {"get", "list", "watch", "delete"}
    assert rules[("pods/log",)] == {"get"}
    assert rules[("services",)] == {"create", "get", "delete"}
